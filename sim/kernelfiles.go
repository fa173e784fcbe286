package sim

import (
	"embed"
	"fmt"
	"io/fs"
	"path"

	"github.com/selfprotect/selfprotect/tracefs"
)

// kernelFiles holds, per kernel, the captured tracefs events/ tree (format
// files, header_page, header_event) and a /proc/meminfo sample, byte for
// byte.
//
//go:embed kernel
var kernelFiles embed.FS

// eventFormat is one event of the embedded tree.
type eventFormat struct {
	system, name string
	raw          []byte
	format       *tracefs.Format
}

// kernelEvents returns the events of a kernel, in a fixed order, parsed.
func kernelEvents(kernel string) ([]eventFormat, error) {
	root := path.Join("kernel", kernel, "events")
	var out []eventFormat
	err := fs.WalkDir(kernelFiles, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Name() != "format" {
			return nil
		}
		raw, err := kernelFiles.ReadFile(p)
		if err != nil {
			return err
		}
		dir := path.Dir(p)
		sys := path.Base(path.Dir(dir))
		f, err := tracefs.ParseFormat(p, sys, raw)
		if err != nil {
			return err
		}
		out = append(out, eventFormat{system: sys, name: path.Base(dir), raw: raw, format: f})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading embedded formats of kernel %s: %w", kernel, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no embedded formats for kernel %s", kernel)
	}
	return out, nil
}

func kernelFile(kernel, name string) ([]byte, error) {
	b, err := kernelFiles.ReadFile(path.Join("kernel", kernel, name))
	if err != nil {
		return nil, fmt.Errorf("reading embedded %s of kernel %s: %w", name, kernel, err)
	}
	return b, nil
}
