package providers

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// greeting is an echo spec whose identities carry greeting as Name.
func greeting(t *testing.T, name, greeting string) Spec {
	s := external(t, name, "echo")
	s.Config = json.RawMessage(`{"greeting":"` + greeting + `"}`)
	s.Timeout = 3 * time.Second
	return s
}

// TestSwapDrainsCallsUnderWay: a call that is under way on a provider a
// Swap replaces finishes on the old plugin, which is stopped only then;
// new calls reach the new plugin at once. Before Swap drained, stopping
// the old plugin cut the call off.
func TestSwapDrainsCallsUnderWay(t *testing.T) {
	h, err := newHost(t, Options{}, greeting(t, "c", "old"))
	if err != nil {
		t.Fatal(err)
	}
	old := mustProvider(t, h, "c")
	oldPID := h.Status()[0].PID
	slow := make(chan error, 1)
	go func() {
		id, err := verify(old, map[string]any{"op": "sleep", "ms": 1000})
		if err == nil && id.Name != "old" {
			err = errors.New("the slow call was answered by " + id.Name)
		}
		slow <- err
	}()
	waitFor(t, 2*time.Second, "the slow call under way", func() bool { return old.inflight.Load() == 1 })
	next, err := h.Stage(context.Background(), greeting(t, "c", "new"))
	if err != nil {
		t.Fatal(err)
	}
	swapped := make(chan struct{})
	go func() { h.Swap([]*Provider{next}, nil); close(swapped) }()
	waitFor(t, 2*time.Second, "the new plugin under the name", func() bool {
		p, ok := h.Provider("c")
		return ok && p == next
	})
	if id, err := verify(mustProvider(t, h, "c"), map[string]any{"op": "ok"}); err != nil || id.Name != "new" {
		t.Fatalf("a call after the swap = %+v, %v; want the new plugin", id, err)
	}
	if pidGone(oldPID) {
		t.Fatal("the old plugin was stopped with a call under way")
	}
	if err := <-slow; err != nil {
		t.Fatalf("the call under way across the swap: %v", err)
	}
	<-swapped
	waitFor(t, 5*time.Second, "the old plugin reaped", func() bool { return pidGone(oldPID) })
	if st := h.Status(); len(st) != 1 || st[0].PID == oldPID || st[0].Health != HealthUp {
		t.Fatalf("status after the swap = %+v", st)
	}
}

// TestStageFailureLeavesOldServing: a staged start that fails (its
// Configure refuses the config) reports the key, and after Discard the
// old provider serves on, alone.
func TestStageFailureLeavesOldServing(t *testing.T) {
	h, err := newHost(t, Options{}, greeting(t, "c", "old"))
	if err != nil {
		t.Fatal(err)
	}
	bad := greeting(t, "c", "new")
	bad.Config = json.RawMessage(`{"fail_configure":true}`)
	p, err := h.Stage(context.Background(), bad)
	var ke *KeyError
	if err == nil || !errors.As(err, &ke) || ke.Key != "config" || !strings.Contains(err.Error(), "configure") {
		t.Fatalf("Stage of a config Configure refuses = %v", err)
	}
	h.Discard([]*Provider{p})
	if id, err := verify(mustProvider(t, h, "c"), map[string]any{"op": "ok"}); err != nil || id.Name != "old" {
		t.Fatalf("the old provider after a failed stage = %+v, %v", id, err)
	}
	if len(h.Status()) != 1 {
		t.Fatalf("status = %+v", h.Status())
	}
}
