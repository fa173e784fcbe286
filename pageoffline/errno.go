package pageoffline

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/selfprotect/selfprotect/fault"
)

// writeVerdict is what one failed write to soft/hard_offline_page means.
type writeVerdict struct {
	retry   bool          // another write may succeed
	outcome fault.Outcome // when not retrying
	why     string        // human explanation for the Detail
}

// classify maps the kernel's errno to what to do next. Only EAGAIN is worth
// retrying: EBUSY means the page could not be isolated or migrated (an
// unmovable kernel page) and will not become movable by waiting.
func classify(err error) writeVerdict {
	switch {
	case errors.Is(err, syscall.EAGAIN):
		return writeVerdict{retry: true, outcome: fault.OutcomeFailed, why: "kernel asked to try again (EAGAIN) and retries ran out"}
	case errors.Is(err, unix.EHWPOISON):
		return writeVerdict{outcome: fault.OutcomeIsolatedByOther, why: "kernel says the page is already poisoned (EHWPOISON)"}
	case errors.Is(err, syscall.EBUSY):
		return writeVerdict{outcome: fault.OutcomeFailed, why: "page busy or unmovable, likely a kernel page (EBUSY); retrying does not help"}
	case errors.Is(err, syscall.EOPNOTSUPP):
		return writeVerdict{outcome: fault.OutcomeFailed, why: "soft offline is disabled (EOPNOTSUPP; vm.enable_soft_offline=0?)"}
	case errors.Is(err, syscall.ENXIO):
		return writeVerdict{outcome: fault.OutcomeNotPresent, why: "no such page frame (ENXIO)"}
	case errors.Is(err, syscall.EPERM):
		return writeVerdict{outcome: fault.OutcomeFailed, why: "not permitted (EPERM; needs CAP_SYS_ADMIN)"}
	case errors.Is(err, syscall.EINVAL):
		return writeVerdict{outcome: fault.OutcomeFailed, why: "address rejected (EINVAL)"}
	case errors.Is(err, syscall.EIO):
		return writeVerdict{outcome: fault.OutcomeFailed, why: "kernel could not offline the page (EIO)"}
	}
	return writeVerdict{outcome: fault.OutcomeFailed, why: "write failed"}
}
