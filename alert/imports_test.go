package alert

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFloors: alert/ and its integrations sit on floor 1 and import only
// floor 0 and each other; the store that keeps the outbox is reached
// through Persistence, which daemon/ fills (architecture.md, "Floors").
func TestFloors(t *testing.T) {
	const mod = "github.com/selfprotect/selfprotect/"
	// Floor 0 (strictyaml arrives with the shared config decoder) and alert
	// itself.
	allowed := []string{"fault", "kpath", "strictyaml", "tracefs", "alert"}
	checked := 0
	err := filepath.WalkDir(".", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		require.NoError(t, err)
		checked++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			rest, ours := strings.CutPrefix(p, mod)
			if !ours {
				continue
			}
			ok := false
			for _, a := range allowed {
				ok = ok || rest == a || strings.HasPrefix(rest, a+"/")
			}
			require.True(t, ok, "%s imports %s", path, p)
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, checked, 10)
}
