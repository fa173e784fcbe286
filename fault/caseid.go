package fault

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
)

// NewCaseID names a new case: a random (version 4) UUID whose bits come
// from the runtime's generator (seeded at exec from the kernel's
// AT_RANDOM), with the clock mixed in, not from crypto/rand. A case needs
// a unique name, not a secret, and crypto/rand's getrandom(2) blocks until
// the kernel's RNG is seeded: the first case after a boot waited for it on
// the main loop, which then took no record for 3 s under emulation
// (TestNeverLate, 6.12 Intel model); it was also a system call on the way
// to every isolation. Random, not time-ordered (version 7): `faulty` shows
// IDs by their first 8 characters, which must tell cases apart.
func NewCaseID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64()^uint64(time.Now().UnixNano()))
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	id, err := uuid.NewRandomFromReader(bytes.NewReader(b[:]))
	if err != nil {
		// Sixteen bytes are there to read; uuid only passes a reader's
		// error on.
		panic("fault: case ID: " + err.Error())
	}
	return id.String()
}
