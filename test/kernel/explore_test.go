package kernel

import (
	"context"
	"os"
	"testing"
)

func TestExplore(t *testing.T) {
	if os.Getenv("EXPLORE") == "" {
		t.Skip()
	}
	lab := newLab(t)
	sc := Scenario{Name: "explore", Append: os.Getenv("APPEND"), Script: os.Getenv("SCRIPT")}
	for _, cell := range matrix(t) {
		t.Run(cell.String(), func(t *testing.T) {
			t.Parallel()
			run, err := lab.Run(context.Background(), cell, sc, RunOptions{WithDaemon: true})
			if run != nil {
				os.WriteFile("/tmp/explore/"+cell.String()+".log", []byte(run.Console), 0o644)
				t.Logf("total %s", run.Total)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
