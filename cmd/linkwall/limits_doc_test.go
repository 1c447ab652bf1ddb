package main

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// limitPackages maps the package prefix used in docs/security.md's limits
// table to its directory.
var limitPackages = map[string]string{
	"server": "../../internal/server",
	"bot":    "../../bot",
	"sqlite": "../../internal/sqlite",
	"chat":   "../../internal/chat",
	"main":   ".",
}

// limitLike matches constant names that look like a limit: each must be in
// the table, unless listed in notLimits.
var limitLike = regexp.MustCompile(`(?i)^(default)?(max|min)|wait|timeout|ttl|grace|poll|burst|rate|strikes|size|bytes|tries|conns|batch|period|lookback|step|limit`)

// notLimits are constants whose names look like limits but are not.
var notLimits = map[string]string{
	"sqlite.syncNormal":       "a PRAGMA value",
	"sqlite.syncFull":         "a PRAGMA value",
	"server.CloseRateLimited": "a WebSocket close code",
}

// TestLimitsTableMatchesCode checks docs/security.md's limits table
// against the Go source: every row names a constant whose value (evaluated
// from the source) is the documented one, and every constant that looks like
// a limit has a row.
func TestLimitsTableMatchesCode(t *testing.T) {
	consts := map[string]constant.Value{}
	for pkg, dir := range limitPackages {
		for name, v := range packageConsts(t, dir) {
			consts[pkg+"."+name] = v
		}
	}
	rows := limitRows(t, "../../docs/security.md")
	if len(rows) < 50 {
		t.Fatalf("the limits table has %d rows; is the table still there?", len(rows))
	}
	for name, doc := range rows {
		v, ok := consts[name]
		if !ok {
			t.Errorf("docs/security.md: %s is not a constant in the code", name)
			continue
		}
		want, err := docValue(doc)
		if err != nil {
			t.Errorf("docs/security.md: %s: %v", name, err)
			continue
		}
		if got, _ := constant.Float64Val(constant.ToFloat(v)); got != want {
			t.Errorf("docs/security.md: %s is %q (%g) but the code says %s", name, doc, want, v)
		}
	}
	for name := range consts {
		_, short, _ := strings.Cut(name, ".")
		if _, documented := rows[name]; !documented && limitLike.MatchString(short) && notLimits[name] == "" {
			t.Errorf("%s looks like a limit but is not in docs/security.md's limits table", name)
		}
	}
}

// limitRows returns the "code" → "value" cells of the limits table.
func limitRows(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	code := regexp.MustCompile("^`([a-z]+\\.[A-Za-z0-9_]+)`$")
	rows := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cells := strings.Split(sc.Text(), "|")
		if len(cells) != 6 {
			continue // | limit | code | value | past it |
		}
		if m := code.FindStringSubmatch(strings.TrimSpace(cells[2])); m != nil {
			if _, dup := rows[m[1]]; dup {
				t.Errorf("docs/security.md: %s has two rows", m[1])
			}
			rows[m[1]] = strings.TrimSpace(cells[3])
		}
	}
	return rows
}

// docValue parses a table value ("4000 runes", "64 KiB per message", "20/s",
// "500 ms", "10 min", "100,000 messages") into the constant's unit: bytes,
// nanoseconds for durations, a number otherwise.
func docValue(s string) (float64, error) {
	m := regexp.MustCompile(`^([0-9][0-9,]*(?:\.[0-9]+)?)(/s| ms| s| min| h| KiB| MiB)?\b`).FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("value %q does not start with a number", s)
	}
	n, err := strconv.ParseFloat(strings.ReplaceAll(m[1], ",", ""), 64)
	if err != nil {
		return 0, err
	}
	unit := map[string]float64{"": 1, "/s": 1, " ms": 1e6, " s": 1e9, " min": 60e9, " h": 3600e9, " KiB": 1 << 10, " MiB": 1 << 20}
	return n * unit[m[2]], nil
}

// packageConsts evaluates the package-level constants of the non-test Go
// files in dir. Only what limits are written with is supported: literals,
// arithmetic and shifts, other constants, time units and conversions.
func packageConsts(t *testing.T, dir string) map[string]constant.Value {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	type spec struct {
		name string
		expr ast.Expr
	}
	var specs []spec
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						specs = append(specs, spec{n.Name, vs.Values[i]})
					}
				}
			}
		}
	}
	units := map[string]int64{"Nanosecond": 1, "Microsecond": 1e3, "Millisecond": 1e6, "Second": 1e9, "Minute": 60e9, "Hour": 3600e9}
	vals := map[string]constant.Value{}
	var eval func(e ast.Expr) constant.Value // nil: not (yet) known
	eval = func(e ast.Expr) constant.Value {
		switch e := e.(type) {
		case *ast.BasicLit:
			return constant.MakeFromLiteral(e.Value, e.Kind, 0)
		case *ast.Ident:
			return vals[e.Name]
		case *ast.ParenExpr:
			return eval(e.X)
		case *ast.SelectorExpr:
			if x, ok := e.X.(*ast.Ident); ok && x.Name == "time" {
				if u, ok := units[e.Sel.Name]; ok {
					return constant.MakeInt64(u)
				}
			}
		case *ast.CallExpr: // a conversion: rate.Limit(20), time.Duration(n)
			if len(e.Args) == 1 {
				return eval(e.Args[0])
			}
		case *ast.UnaryExpr:
			if x := eval(e.X); x != nil {
				return constant.UnaryOp(e.Op, x, 0)
			}
		case *ast.BinaryExpr:
			x, y := eval(e.X), eval(e.Y)
			if x == nil || y == nil {
				return nil
			}
			switch e.Op {
			case token.SHL, token.SHR:
				n, _ := constant.Uint64Val(y)
				return constant.Shift(x, e.Op, uint(n))
			case token.QUO:
				if x.Kind() == constant.Int && y.Kind() == constant.Int {
					return constant.BinaryOp(x, token.QUO_ASSIGN, y) // integer division, as Go does
				}
			}
			if x.Kind() == constant.String || y.Kind() == constant.String {
				return nil
			}
			return constant.BinaryOp(x, e.Op, y)
		}
		return nil
	}
	// Constants may use ones declared later: evaluate until nothing changes.
	for changed := true; changed; {
		changed = false
		for _, s := range specs {
			if _, done := vals[s.name]; done {
				continue
			}
			if v := eval(s.expr); v != nil && v.Kind() != constant.Unknown {
				vals[s.name] = v
				changed = true
			}
		}
	}
	for name, v := range vals {
		if v.Kind() != constant.Int && v.Kind() != constant.Float {
			delete(vals, name)
		}
	}
	return vals
}
