package strictyaml

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"10s", 10 * time.Second, false},
		{"24h", 24 * time.Hour, false},
		{"1h30m", 90 * time.Minute, false},
		{"7d", 7 * 24 * time.Hour, false},
		{"1.5d", 36 * time.Hour, false},
		{"1d12h", 36 * time.Hour, false},
		{"0", 0, false},
		{"-5s", -5 * time.Second, false},
		{"24 hours", 0, true},
		{"60", 0, true},
		{"d", 0, true},
		{"1dd", 0, true},
		{"1e3d", 0, true},
		{"infd", 0, true},
		{"1d-3h", 0, true},
		{"999999999999d", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.err {
				require.Error(t, err)
				require.Contains(t, err.Error(), "invalid duration")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		24 * time.Hour: "24h", 10 * time.Second: "10s", 90 * time.Minute: "1h30m",
		time.Minute: "1m", 0: "0s", 1500 * time.Millisecond: "1.5s", time.Hour + time.Second: "1h0m1s",
	} {
		require.Equal(t, want, FormatDuration(d))
	}
}
