package pythonsdk_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers"
	"github.com/handoffd/handoff/providers/sdk"
)

func TestFeasibility(t *testing.T) {
	abs, _ := filepath.Abs(".")
	path := filepath.Join(abs, "testdata", "kvplugin.py")
	b, _ := os.ReadFile(path)
	sum := sha256.Sum256(b)
	rt, _ := os.MkdirTemp("", "hrt")
	defer os.RemoveAll(rt)
	h := providers.New(providers.Options{RuntimeDir: rt, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	defer h.Close()
	start := time.Now()
	err := h.Start(context.Background(), []providers.Spec{{Name: "py", External: &providers.External{Path: path, SHA256: hex.EncodeToString(sum[:]), Env: map[string]string{"PYTHONPATH": abs}}, Config: json.RawMessage(`{"a":1}`)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("started in", time.Since(start))
	p, _ := h.Provider("py")
	for _, pl := range []string{`{"op":"put","key":"k","value":"aGk="}`, `{"op":"get","key":"k"}`, `{"op":"add","key":"c","delta":3}`, `{"op":"get","key":"nope"}`, `{"op":"raise"}`, `{"op":"print"}`} {
		id, err := p.Verify(context.Background(), sdk.Request{Payload: json.RawMessage(pl)})
		t.Logf("%s -> %+v %v (code %v)", pl, id.Subject, err, sdk.CodeOf(err))
	}
	t.Log(h.Status())
	st := time.Now()
	h.Close()
	t.Log("closed in", time.Since(st))
}
