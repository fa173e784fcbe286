package pageoffline

import "github.com/selfprotect/selfprotect/kpath/kpathtest"

// The in-memory kpath.FS both actuator packages test through.
type fakeFS = kpathtest.FakeFS

var newFakeFS = kpathtest.New
