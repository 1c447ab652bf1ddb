#!/usr/bin/env bash
# Runs the topology of docker-compose.yml as local processes, for machines
# without a container engine:
#
#   Redis (LINKWALL_REDIS, default redis://127.0.0.1:6379/0; must be running)
#   two `linkwall serve --redis` nodes on 127.0.0.1:8081 and 127.0.0.1:8082
#   a WebSocket-capable load balancer on 127.0.0.1:8080 (nginx, if installed:
#   `apt-get install nginx-light`; without it the script prints both node
#   URLs and each node serves the demo on its own)
#
# Ctrl-C stops everything the script started. Kill one node (its pid is
# printed) to watch its clients reconnect through the balancer to the other
# node and resume without gap or duplicate.
set -euo pipefail
cd "$(dirname "$0")/.."

redis_url=${LINKWALL_REDIS:-redis://127.0.0.1:6379/0}
lb_port=${LB_PORT:-8080}
node_ports=(${NODE_PORTS:-8081 8082})

tmp=$(mktemp -d -t linkwall-cluster.XXXXXX)
pids=()
cleanup() {
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	echo "cluster: stopped; logs were in $tmp (removed)"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v redis-cli >/dev/null 2>&1; then
	echo "cluster: redis-cli not found (apt-get install redis-server)" >&2
	exit 1
fi
if ! redis-cli -u "$redis_url" ping >/dev/null 2>&1; then
	echo "cluster: no Redis answers at $redis_url. Start one with persistence, e.g." >&2
	echo "  redis-server --daemonize yes --bind 127.0.0.1 --appendonly yes --appendfsync everysec --dir /var/lib/redis" >&2
	exit 1
fi
echo "cluster: Redis answers at $redis_url"

echo "cluster: building linkwall"
go build -o "$tmp/linkwall" ./cmd/linkwall

# Each node accepts pages served by the balancer as well as its own.
origins="http://localhost:$lb_port,http://127.0.0.1:$lb_port"
for port in "${node_ports[@]}"; do
	"$tmp/linkwall" serve --addr "127.0.0.1:$port" --redis "$redis_url" \
		--allowed-origins "$origins" >"$tmp/node-$port.log" 2>&1 &
	pids+=($!)
	echo "cluster: node on 127.0.0.1:$port, pid $!, log $tmp/node-$port.log"
done

ready() { "$tmp/linkwall" healthcheck "$1" 2>/dev/null; }
for port in "${node_ports[@]}"; do
	for _ in $(seq 50); do ready "http://127.0.0.1:$port/readyz" && break; sleep 0.2; done
	if ! ready "http://127.0.0.1:$port/readyz"; then
		echo "cluster: node on $port is not ready:" >&2
		tail -n 20 "$tmp/node-$port.log" >&2
		exit 1
	fi
done

if command -v nginx >/dev/null 2>&1; then
	upstreams=""
	for port in "${node_ports[@]}"; do
		# A failed node is skipped for 5 s; a request that fails on one
		# node (connection refused, 502/503 while it is not ready) is
		# retried on the other, as Caddy's lb_try_duration does in compose.
		upstreams+="server 127.0.0.1:$port max_fails=1 fail_timeout=5s; "
	done
	cat >"$tmp/nginx.conf" <<-EOF
		daemon off;
		worker_processes 1;
		pid $tmp/nginx.pid;
		error_log $tmp/nginx-error.log warn;
		events { worker_connections 4096; }
		http {
		  access_log off;
		  client_body_temp_path $tmp/nginx-body;
		  proxy_temp_path $tmp/nginx-proxy;
		  fastcgi_temp_path $tmp/nginx-fastcgi;
		  uwsgi_temp_path $tmp/nginx-uwsgi;
		  scgi_temp_path $tmp/nginx-scgi;
		  upstream linkwall { $upstreams }
		  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
		  server {
		    listen 127.0.0.1:$lb_port;
		    location / {
		      proxy_pass http://linkwall;
		      proxy_http_version 1.1;
		      proxy_set_header Upgrade \$http_upgrade;
		      proxy_set_header Connection \$connection_upgrade;
		      proxy_set_header Host \$http_host;
		      proxy_read_timeout 1h;
		      proxy_buffering off;
		      proxy_next_upstream error timeout http_502 http_503;
		    }
		  }
		}
	EOF
	nginx -c "$tmp/nginx.conf" -p "$tmp" &
	pids+=($!)
	for _ in $(seq 50); do ready "http://127.0.0.1:$lb_port/healthz" && break; sleep 0.2; done
	if ! ready "http://127.0.0.1:$lb_port/healthz"; then
		echo "cluster: nginx did not come up:" >&2
		cat "$tmp/nginx-error.log" >&2 || true
		exit 1
	fi
	echo "cluster: open http://localhost:$lb_port/ (nginx, pid $!, balancing both nodes)"
else
	echo "cluster: nginx is not installed, so there is no balancer on $lb_port."
	echo "cluster: open the nodes directly; they share everything through Redis:"
	for port in "${node_ports[@]}"; do echo "  http://127.0.0.1:$port/"; done
fi
echo "cluster: Ctrl-C stops everything"
wait
