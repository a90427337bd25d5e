package benchreport

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchmarkFuncs finds every Benchmark function in the repository's test
// files (whatever their build tags) and whether it runs sub-benchmarks.
func benchmarkFuncs(t *testing.T, root string) map[string]bool {
	t.Helper()
	subs := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "node_modules" || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Benchmark") || fn.Body == nil {
				continue
			}
			subs[fn.Name.Name] = callsRun(fn)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return subs
}

// callsRun reports whether the benchmark fn calls Run on its *testing.B.
func callsRun(fn *ast.FuncDecl) bool {
	params := fn.Type.Params.List
	if len(params) != 1 || len(params[0].Names) != 1 {
		return false
	}
	b := params[0].Names[0].Name
	found := false
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok {
			if sel, ok := c.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Run" {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == b {
					found = true
				}
			}
		}
		return !found
	})
	return found
}

// TestSpecsNameRealBenchmarks keeps the specs honest: each names a
// benchmark function that exists, and one that runs sub-benchmarks only by
// a sub-benchmark's name. A benchmark that grew sub-benchmarks no longer
// prints its bare name, and its figure went "not measured" in BENCH.md
// (BenchmarkSchedulerHeap).
func TestSpecsNameRealBenchmarks(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("the repository root %s has no go.mod: %v", root, err)
	}
	funcs := benchmarkFuncs(t, root)
	if len(funcs) < 10 {
		t.Fatalf("found only %d benchmark functions under %s", len(funcs), root)
	}
	for _, s := range Specs {
		name, sub, hasSub := strings.Cut(s.Bench, "/")
		runs, ok := funcs[name]
		switch {
		case !ok:
			t.Errorf("%q: no func %s in any _test.go file", s.Figure, name)
		case runs && !hasSub:
			t.Errorf("%q: %s runs sub-benchmarks, so it never reports as %s; name one (%s/NAME)", s.Figure, name, name, name)
		case !runs && hasSub:
			t.Errorf("%q: %s runs no sub-benchmark, so %s/%s never reports", s.Figure, name, name, sub)
		}
	}
}
