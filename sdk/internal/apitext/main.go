// Command apitext prints the sdk's exported API as text, one declaration a line, sorted:
// the readable baseline (sdk/api/sdk.txt) that scripts/check-modules.sh compares with
// the tree, so that a diff shows every addition, change and removal (apidiff, against
// the binary baseline, judges only compatibility). It reads the source of every
// package under the module that is not internal, an example or a command.
//
//	go run ./internal/apitext [-count] [DIR]    from the sdk module's root
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

func main() {
	count := flag.Bool("count", false, "print the number of exported identifiers by package instead")
	flag.Parse()
	root := "."
	if flag.NArg() > 0 {
		root = flag.Arg(0)
	}
	module, err := modulePath(filepath.Join(root, "go.mod"))
	if err != nil {
		fail(err)
	}
	lines, perPackage, err := apiOf(root, module)
	if err != nil {
		fail(err)
	}
	if *count {
		total := 0
		for _, pkg := range slices.Sorted(maps.Keys(perPackage)) {
			fmt.Printf("%5d %s\n", perPackage[pkg], pkg)
			total += perPackage[pkg]
		}
		fmt.Printf("%5d in all\n", total)
		return
	}
	for _, l := range lines {
		fmt.Println(l)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "apitext:", err)
	os.Exit(1)
}

func modulePath(goMod string) (string, error) {
	b, err := os.ReadFile(goMod)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.TrimSpace(rest), nil
		}
	}
	return "", fmt.Errorf("%s: no module line", goMod)
}

// apiOf lists the exported declarations of every API package under root, and counts
// the exported identifiers (functions, methods, types, fields, interface methods,
// constants, variables) of each.
func apiOf(root, module string) ([]string, map[string]int, error) {
	var lines []string
	counts := map[string]int{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		for _, part := range strings.Split(filepath.ToSlash(rel), "/") {
			if part == "internal" || part == "examples" || part == "cmd" || part == "testdata" || strings.HasPrefix(part, ".") && part != "." {
				return filepath.SkipDir
			}
		}
		fset := token.NewFileSet()
		pkgs, err := parser.ParseDir(fset, path, func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
		if err != nil {
			return err
		}
		importPath := module
		if rel != "." {
			importPath += "/" + filepath.ToSlash(rel)
		}
		for name, pkg := range pkgs {
			if name == "main" {
				continue
			}
			for _, file := range pkg.Files {
				for _, decl := range file.Decls {
					for _, l := range declLines(fset, decl) {
						lines = append(lines, "pkg "+importPath+", "+l)
						counts[importPath]++
					}
				}
			}
		}
		return nil
	})
	slices.Sort(lines)
	return lines, counts, err
}

// declLines are the exported parts of one declaration, each on a line of its own.
func declLines(fset *token.FileSet, decl ast.Decl) []string {
	var out []string
	switch d := decl.(type) {
	case *ast.FuncDecl:
		if !d.Name.IsExported() || d.Recv != nil && !exportedRecv(d.Recv) {
			return nil
		}
		recv := ""
		if d.Recv != nil {
			recv = "(" + render(fset, d.Recv.List[0].Type) + ") "
		}
		out = append(out, "func "+recv+d.Name.Name+strings.TrimPrefix(render(fset, d.Type), "func"))
	case *ast.GenDecl:
		for _, spec := range d.Specs {
			switch s := spec.(type) {
			case *ast.TypeSpec:
				if s.Name.IsExported() {
					out = append(out, typeLines(fset, s)...)
				}
			case *ast.ValueSpec:
				kind := "var"
				if d.Tok == token.CONST {
					kind = "const"
				}
				for _, n := range s.Names {
					if !n.IsExported() {
						continue
					}
					l := kind + " " + n.Name
					if s.Type != nil {
						l += " " + render(fset, s.Type)
					}
					out = append(out, l)
				}
			}
		}
	}
	return out
}

// typeLines: the type, then each exported field of a struct or method of an interface.
func typeLines(fset *token.FileSet, s *ast.TypeSpec) []string {
	name := s.Name.Name
	switch t := s.Type.(type) {
	case *ast.StructType:
		out := []string{"type " + name + " struct"}
		for _, f := range t.Fields.List {
			for _, n := range f.Names {
				if n.IsExported() {
					out = append(out, "type "+name+" struct, "+n.Name+" "+render(fset, f.Type))
				}
			}
			if len(f.Names) == 0 { // embedded
				out = append(out, "type "+name+" struct, embedded "+render(fset, f.Type))
			}
		}
		return out
	case *ast.InterfaceType:
		out := []string{"type " + name + " interface"}
		for _, m := range t.Methods.List {
			for _, n := range m.Names {
				if n.IsExported() {
					out = append(out, "type "+name+" interface, "+n.Name+strings.TrimPrefix(render(fset, m.Type), "func"))
				}
			}
			if len(m.Names) == 0 {
				out = append(out, "type "+name+" interface, embedded "+render(fset, m.Type))
			}
		}
		return out
	}
	eq := " "
	if s.Assign.IsValid() {
		eq = " = "
	}
	return []string{"type " + name + eq + render(fset, s.Type)}
}

func exportedRecv(recv *ast.FieldList) bool {
	t := recv.List[0].Type
	if star, ok := t.(*ast.StarExpr); ok {
		t = star.X
	}
	if idx, ok := t.(*ast.IndexExpr); ok {
		t = idx.X
	}
	id, ok := t.(*ast.Ident)
	return ok && id.IsExported()
}

func render(fset *token.FileSet, node ast.Node) string {
	var b bytes.Buffer
	printer.Fprint(&b, fset, node)
	return strings.Join(strings.Fields(b.String()), " ")
}
