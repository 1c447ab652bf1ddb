// Command linkload is linkwall's load generator. It speaks API v1: it
// creates users and group rooms, opens one WebSocket per user, sends a
// paced mix of chatter and Chinese share texts (Taobao, Douyin, JD,
// Pinduoduo links), and reports delivered messages per second, end-to-end
// latency percentiles, losses, errors, close codes and the server's memory
// per connection.
//
//	linkload [load] [flags]         a fixed-rate load (or -max: ramp to the peak, then half of it)
//	linkload idle   [flags]         open -conns idle connections, report memory per connection
//	linkload resume [flags]         time a client resuming -msgs messages sent while it was away
//	linkload compare -linkwall BIN  the same measurements against the baseline and linkwall, and the ratios
//	linkload baseline-server -addr  run the baseline server (internal/baseline)
//	linkload centrifugo-config -addr print a Centrifugo v6 configuration for -protocol centrifugo
//
// With -protocol centrifugo, load and -max speak Centrifugo's JSON client
// protocol instead (anonymous connections, a channel per room, publish
// commands), so that the same load measures that server too.
//
// Every message carries its send time and number in a marker at the start
// of its text, so receivers compute latency and find losses and duplicates.
//
// -slices 100ms also reports the latency of every tenth of a second, so
// that a late start or an episode shows where a run's p99 comes from; the
// median of the slices' p99s is the steady tail, and compare reports its
// ratio too.
// -warmup 1s sends at the measured rate for a second on fresh connections
// before each measured run and reports it apart: a fresh server process,
// a fresh linkload and fresh connections are slower for their first few
// hundred milliseconds (both processes take most of their page faults
// then), which weighs more than the 1 % that p99 looks at.
// -socket-time (Linux) also times each delivery to the moment its frame
// reached the receiver's socket, from the kernel's receive timestamps, so
// that the receiving client's own wait for a core shows apart; reading
// them with recvmsg costs linkload CPU, so it is off by default.
//
// Run it against a server started separately (-url), or let compare start
// both servers as child processes, one after the other, so that they never
// share the CPU. With -max, compare also runs linkwall at the baseline's
// half-peak rate, so that latency is compared at the same load as well as
// at each server's own half peak. docs/benchmarks.md has the method and
// the figures.
package main
