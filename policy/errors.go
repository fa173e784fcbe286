package policy

import (
	"errors"

	"github.com/selfprotect/selfprotect/strictyaml"
)

// ErrInvalid is matched (errors.Is) by every error that says the policy
// itself is wrong, as opposed to the file being unreadable.
var ErrInvalid = errors.New("invalid policy")

// ConfigError names where in which file a policy went wrong:
// "policy.yaml:12: rules.page.threshold: must be >= 1, got -3".
type ConfigError = strictyaml.Error
