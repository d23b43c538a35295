package pythonsdk_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/handoffd/handoff/providers"
	verifierv1 "github.com/handoffd/handoff/providers/proto/verifier/v1"
	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/providers/sdk"
	"github.com/handoffd/handoff/sdk/python/pythontest"
)

// TestUnittest runs the SDK's own Python unit tests
// (`/usr/bin/python3 -m unittest discover sdk/python`).
func TestUnittest(t *testing.T) { pythontest.Unittest(t, pythontest.SDKDir()) }

// records keeps what the host logs, to check the plugin's logs arrive
// re-logged with their level and attributes.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// find returns the first record with msg, and its attributes.
func (r *records) find(msg string) (slog.Level, map[string]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if rec.Message != msg {
			continue
		}
		attrs := map[string]string{}
		rec.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
		return rec.Level, attrs, true
	}
	return 0, nil, false
}

// wait waits up to 5 s for a record with msg: the host re-logs the
// plugin's stderr as it reads it, after the call has returned.
func (r *records) wait(msg string) bool {
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if _, _, ok := r.find(msg); ok {
			return true
		}
	}
	return false
}

// kvPlugin is testdata/kvplugin.py pinned, in mode (see the file).
func kvPlugin(t testing.TB, mode string) providers.Spec {
	pythontest.Require(t)
	env := pythontest.Env()
	env["KVPLUGIN_MODE"] = mode
	return providers.Spec{Name: "py", External: pythontest.External(t, filepath.Join(pythontest.SDKDir(), "testdata", "kvplugin.py"), env)}
}

func startHost(t testing.TB, kv providers.KV, logs *records, spec providers.Spec) (*providers.Host, error) {
	rt, err := os.MkdirTemp("", "hpy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	opts := providers.Options{RuntimeDir: rt, Logger: slog.New(logs)}
	if kv != nil {
		opts.KV = func(string) providers.KV { return kv }
	}
	h := providers.New(opts)
	t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return h, h.Start(ctx, []providers.Spec{spec})
}

// call runs one KV operation in the plugin (see kvplugin.py) and returns
// the subject it answered.
func call(t testing.TB, p *providers.Provider, op map[string]any) (string, error) {
	t.Helper()
	raw, _ := json.Marshal(op)
	id, err := p.Verify(context.Background(), sdk.Request{Payload: raw, RequestID: "req-1"})
	return id.Subject, err
}

func mustCall(t *testing.T, p *providers.Provider, op map[string]any, want string) {
	t.Helper()
	got, err := call(t, p, op)
	if err != nil || got != want {
		t.Fatalf("%v: got %q, %v; want %q", op, got, err, want)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestHostKV drives every KV method of the Python SDK through the real
// host, over the broker connection with strict mutual TLS, and checks
// what lands in the host's KV.
func TestHostKV(t *testing.T) {
	kv := providertest.NewKV()
	logs := &records{}
	h, err := startHost(t, kv, logs, kvPlugin(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := h.Provider("py")
	value := "\x00\xffbinary"
	mustCall(t, p, map[string]any{"op": "put", "key": "a/1", "value": b64(value)}, "ok")
	if got, err := kv.Get(context.Background(), "a/1"); err != nil || string(got) != value {
		t.Fatalf("host KV a/1 = %q, %v", got, err)
	}
	mustCall(t, p, map[string]any{"op": "get", "key": "a/1"}, b64(value))
	if _, err := call(t, p, map[string]any{"op": "get", "key": "missing"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("get of a missing key: %v, want ErrNotFound", err)
	}
	// CompareAndSwap: put-if-absent wins once; a matching old swaps; a
	// nil new deletes.
	mustCall(t, p, map[string]any{"op": "cas", "key": "once", "new": b64("x")}, "True")
	mustCall(t, p, map[string]any{"op": "cas", "key": "once", "new": b64("y")}, "False")
	mustCall(t, p, map[string]any{"op": "cas", "key": "once", "old": b64("x"), "new": b64("z")}, "True")
	mustCall(t, p, map[string]any{"op": "cas", "key": "once", "old": b64("x"), "new": b64("w")}, "False")
	mustCall(t, p, map[string]any{"op": "cas", "key": "once", "old": b64("z")}, "True")
	if _, err := kv.Get(context.Background(), "once"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("CAS with new None left the key: %v", err)
	}
	// Add: atomic counter, 8 bytes big-endian in the host KV.
	mustCall(t, p, map[string]any{"op": "add", "key": "n", "delta": 3}, "3")
	mustCall(t, p, map[string]any{"op": "add", "key": "n", "delta": -1, "ttl": 60}, "2")
	if got, _ := kv.Get(context.Background(), "n"); !bytes.Equal(got, sdk.EncodeCounter(2)) {
		t.Fatalf("counter bytes %x", got)
	}
	mustCall(t, p, map[string]any{"op": "put", "key": "text", "value": b64("abc")}, "ok")
	if _, err := call(t, p, map[string]any{"op": "add", "key": "text", "delta": 1}); !errors.Is(err, sdk.ErrInvalidRequest) {
		t.Fatalf("add to a non-counter: %v, want ErrInvalidRequest", err)
	}
	mustCall(t, p, map[string]any{"op": "put", "key": "a/2", "value": b64("2")}, "ok")
	mustCall(t, p, map[string]any{"op": "list", "prefix": "a/"}, "a/1,a/2")
	mustCall(t, p, map[string]any{"op": "delete", "key": "a/2"}, "ok")
	mustCall(t, p, map[string]any{"op": "list", "prefix": "a/"}, "a/1")
	// A TTL expires the value.
	mustCall(t, p, map[string]any{"op": "put", "key": "short", "value": b64("v"), "ttl": 0.05}, "ok")
	time.Sleep(150 * time.Millisecond)
	if _, err := kv.Get(context.Background(), "short"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("a value put with a 50 ms ttl is still there: %v", err)
	}

	// The plugin's log lines are re-logged by the host with level and
	// attributes, and the request id.
	logs.wait("verify")
	level, attrs, ok := logs.find("verify")
	if !ok || level != slog.LevelInfo || attrs["op"] != "put" || attrs["request_id"] != "req-1" {
		t.Fatalf("plugin log line not re-logged as sent: %v %v %v", ok, level, attrs)
	}
}

// TestErrors checks that the Python SDK's errors reach the host as the
// contract codes the Go SDK's do, and that the plugin keeps serving.
func TestErrors(t *testing.T) {
	logs := &records{}
	h, err := startHost(t, nil, logs, kvPlugin(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := h.Provider("py")
	for _, c := range []struct {
		op   string
		want error
		msg  string
	}{
		{"nope", sdk.ErrInvalidRequest, "unknown op"},
		{"raise", sdk.ErrInternal, "plugin raised in Verify: ZeroDivisionError: boom"},
		{"internal", sdk.ErrInternal, ""},
	} {
		_, err := call(t, p, map[string]any{"op": c.op})
		var se *sdk.Error
		if !errors.Is(err, c.want) || !errors.As(err, &se) || se.Message != c.msg {
			t.Errorf("op %s: %#v, want %v with message %q", c.op, err, c.want, c.msg)
		}
	}
	logs.wait("plugin raised")
	if level, attrs, ok := logs.find("plugin raised"); !ok || level != slog.LevelError || !strings.Contains(attrs["error"], "ZeroDivisionError") {
		t.Errorf("the exception was not logged with its traceback: %v %v %v", ok, level, attrs)
	}
	// A print after the handshake goes to stderr, not into the protocol.
	mustCall(t, p, map[string]any{"op": "print"}, "printed")
	if !logs.wait("stray output") {
		t.Error("a print was not re-logged by the host")
	}
	if st := h.Status()[0]; st.Health != providers.HealthUp || st.Restarts != 0 {
		t.Errorf("status after errors: %+v", st)
	}
}

// TestStrictMTLS breaks AutoMTLS in three ways; the host must refuse the
// plugin each time: the Python SDK trusts exactly the host's certificate
// on both its server and its broker dial, and the host pins the
// certificate the handshake names.
func TestStrictMTLS(t *testing.T) {
	for mode, want := range map[string]string{
		"trust-other-host":     "describe: the plugin is unavailable", // the plugin's server refused the host's certificate
		"broker-trusts-other":  "configure: dial host services",       // the plugin refused the broker's certificate
		"advertise-other-cert": "certificate signed by unknown authority",
	} {
		t.Run(mode, func(t *testing.T) {
			start := time.Now()
			_, err := startHost(t, nil, &records{}, kvPlugin(t, mode))
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("host started a plugin whose mTLS is broken (%s): %v", mode, err)
			}
			t.Logf("refused in %s: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
}

// TestStop checks the plugin answers GRPCController.Shutdown: the host
// stops it in well under go-plugin's 2 s grace, and it leaves no process.
func TestStop(t *testing.T) {
	h, err := startHost(t, nil, &records{}, kvPlugin(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	pid := h.Status()[0].PID
	start := time.Now()
	h.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %s: the plugin did not shut down on GRPCController.Shutdown", took)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("plugin pid %d still alive after Close", pid)
	}
}

// TestGeneratedProtoMatches checks the committed verifier_pb2.py against
// the contract the Go side is built from: the same file descriptor, so a
// change to providers/proto/verifier/v1/verifier.proto without running
// sdk/python/gen.sh fails here.
func TestGeneratedProtoMatches(t *testing.T) {
	py := pythontest.Require(t)
	cmd := exec.Command(py, "-B", "-c", "import sys, base64\nfrom handoff_plugin._pb import verifier_pb2\n"+
		"sys.stdout.write(base64.b64encode(verifier_pb2.DESCRIPTOR.serialized_pb).decode())")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+pythontest.SDKDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("read verifier_pb2's descriptor: %v", err)
	}
	raw, err := base64.StdEncoding.DecodeString(string(out))
	if err != nil {
		t.Fatal(err)
	}
	var got descriptorpb.FileDescriptorProto
	if err := proto.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	want := protodesc.ToFileDescriptorProto(verifierv1.File_verifier_proto)
	want.SourceCodeInfo = nil
	// protoc gives the Go generator json_name on every field, and Python's
	// serialized descriptor none: not part of the wire.
	for _, fd := range []*descriptorpb.FileDescriptorProto{&got, want} {
		clearJSONNames(fd.GetMessageType())
	}
	if !proto.Equal(&got, want) {
		t.Fatal("sdk/python/handoff_plugin/_pb/verifier_pb2.py is not generated from providers/proto/verifier/v1/verifier.proto: run sdk/python/gen.sh")
	}
}

func clearJSONNames(msgs []*descriptorpb.DescriptorProto) {
	for _, m := range msgs {
		for _, f := range m.GetField() {
			f.JsonName = nil
		}
		clearJSONNames(m.GetNestedType())
	}
}

// TestKillRecovers kills the Python plugin with SIGKILL: the host starts
// a new process and answers again, as for a Go plugin.
func TestKillRecovers(t *testing.T) {
	h, err := startHost(t, nil, &records{}, kvPlugin(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := h.Provider("py")
	pid := h.Status()[0].PID
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := call(t, p, map[string]any{"op": "ok"}); err == nil {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("no answer 15 s after kill -9: %+v", h.Status()[0])
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := h.Status()[0]
	if st.PID == pid || st.Restarts != 1 {
		t.Fatalf("after kill -9: %+v", st)
	}
	t.Logf("kill -9 to the next answer: %s", time.Since(start).Round(time.Millisecond))
}
