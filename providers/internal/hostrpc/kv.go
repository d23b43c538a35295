package hostrpc

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"
	"unicode/utf8"

	pb "github.com/handoffd/handoff/providers/proto/verifier/v1"
	"github.com/handoffd/handoff/providers/sdk"
)

// KV is the key-value space the host serves to one provider instance
// (providers.KV has the same methods).
type KV interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix, after string, limit int) ([]sdk.KVEntry, error)
}

// Updater is a KV that can change a value in one transaction (as
// tokenstore.KV.Update does): change gets the current value (nil when
// absent) and returns the new one, nil to delete, or an error to abort.
type Updater interface {
	Update(ctx context.Context, key string, ttl time.Duration, change func(old []byte) ([]byte, error)) error
}

// Adder is a KV with its own atomic counter (as tokenstore.KV.Add is, in
// one store transaction), with sdk.KV.Add's semantics.
type Adder interface {
	Add(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error)
}

// Limits on what a plugin may store.
const (
	MaxKeyLen    = 512
	MaxValueLen  = 1 << 20
	DefaultLimit = 100
	MaxLimit     = 1000
)

// KVServer serves a KV to a plugin.
type KVServer struct {
	pb.UnimplementedHostKVServer
	kv KV
	// swapMu serialises CompareAndSwap when kv is not an Updater: atomic
	// within this host process, not across replicas.
	swapMu *sync.Mutex
}

// NewKVServer serves kv. swapMu guards CompareAndSwap on a kv without
// Update; share one per provider across restarts. nil makes one.
func NewKVServer(kv KV, swapMu *sync.Mutex) *KVServer {
	if swapMu == nil {
		swapMu = new(sync.Mutex)
	}
	return &KVServer{kv: kv, swapMu: swapMu}
}

func badRequest(msg string) error {
	return encode(&sdk.Error{Code: sdk.CodeInvalidRequest, Message: "kv: " + msg})
}

func checkKey(key string) error {
	switch {
	case key == "":
		return badRequest("empty key")
	case len(key) > MaxKeyLen:
		return badRequest("key longer than 512 bytes")
	case !utf8.ValidString(key):
		return badRequest("key is not UTF-8")
	}
	return nil
}

func ttlOf(ms int64) time.Duration {
	if ms <= 0 {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

func (s *KVServer) Get(ctx context.Context, r *pb.KVGetRequest) (*pb.KVGetResponse, error) {
	if err := checkKey(r.GetKey()); err != nil {
		return nil, err
	}
	v, err := s.kv.Get(ctx, r.GetKey())
	if err != nil {
		return nil, encode(err)
	}
	return &pb.KVGetResponse{Value: v}, nil
}

func (s *KVServer) Put(ctx context.Context, r *pb.KVPutRequest) (*pb.KVPutResponse, error) {
	if err := checkKey(r.GetKey()); err != nil {
		return nil, err
	}
	if len(r.GetValue()) > MaxValueLen {
		return nil, badRequest("value larger than 1 MiB")
	}
	if err := s.kv.Put(ctx, r.GetKey(), nonNil(r.GetValue()), ttlOf(r.GetTtlMs())); err != nil {
		return nil, encode(err)
	}
	return &pb.KVPutResponse{}, nil
}

func (s *KVServer) Delete(ctx context.Context, r *pb.KVDeleteRequest) (*pb.KVDeleteResponse, error) {
	if err := checkKey(r.GetKey()); err != nil {
		return nil, err
	}
	if err := s.kv.Delete(ctx, r.GetKey()); err != nil {
		return nil, encode(err)
	}
	return &pb.KVDeleteResponse{}, nil
}

func (s *KVServer) List(ctx context.Context, r *pb.KVListRequest) (*pb.KVListResponse, error) {
	limit := int(r.GetLimit())
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	es, err := s.kv.List(ctx, r.GetPrefix(), r.GetAfter(), limit)
	if err != nil {
		return nil, encode(err)
	}
	out := &pb.KVListResponse{Entries: make([]*pb.KVEntry, len(es))}
	for i, e := range es {
		out.Entries[i] = &pb.KVEntry{Key: e.Key, Value: e.Value}
	}
	return out, nil
}

var errNoSwap = errors.New("kv: compare failed")

func (s *KVServer) CompareAndSwap(ctx context.Context, r *pb.KVCompareAndSwapRequest) (*pb.KVCompareAndSwapResponse, error) {
	if err := checkKey(r.GetKey()); err != nil {
		return nil, err
	}
	if len(r.GetNew()) > MaxValueLen {
		return nil, badRequest("value larger than 1 MiB")
	}
	matches := func(cur []byte, present bool) bool {
		if r.GetOldAbsent() {
			return !present
		}
		return present && bytes.Equal(cur, r.GetOld())
	}
	next := func() []byte {
		if r.GetDelete() {
			return nil
		}
		return nonNil(r.GetNew())
	}
	if u, ok := s.kv.(Updater); ok {
		swapped := false
		err := u.Update(ctx, r.GetKey(), ttlOf(r.GetTtlMs()), func(cur []byte) ([]byte, error) {
			if !matches(cur, cur != nil) {
				return nil, errNoSwap
			}
			swapped = true
			return next(), nil
		})
		if err != nil && !errors.Is(err, errNoSwap) {
			return nil, encode(err)
		}
		return &pb.KVCompareAndSwapResponse{Swapped: swapped}, nil
	}
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	cur, err := s.kv.Get(ctx, r.GetKey())
	present := err == nil
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return nil, encode(err)
	}
	if !matches(cur, present) {
		return &pb.KVCompareAndSwapResponse{}, nil
	}
	if r.GetDelete() {
		err = s.kv.Delete(ctx, r.GetKey())
	} else {
		err = s.kv.Put(ctx, r.GetKey(), next(), ttlOf(r.GetTtlMs()))
	}
	if err != nil {
		return nil, encode(err)
	}
	return &pb.KVCompareAndSwapResponse{Swapped: true}, nil
}

// Add serves sdk.KV.Add: by the KV's own Add, else in one Update, else
// under swapMu (atomic within this host process only).
func (s *KVServer) Add(ctx context.Context, r *pb.KVAddRequest) (*pb.KVAddResponse, error) {
	if err := checkKey(r.GetKey()); err != nil {
		return nil, err
	}
	key, delta, ttl := r.GetKey(), r.GetDelta(), ttlOf(r.GetTtlMs())
	var (
		n   int64
		err error
	)
	switch kv := s.kv.(type) {
	case Adder:
		n, err = kv.Add(ctx, key, delta, ttl)
	case Updater:
		err = kv.Update(ctx, key, ttl, func(cur []byte) ([]byte, error) {
			sum, v, aerr := AddCounter(cur, delta)
			n = sum
			return v, aerr
		})
	default:
		n, err = s.addLocked(ctx, key, delta, ttl)
	}
	if err != nil {
		return nil, encode(err)
	}
	return &pb.KVAddResponse{Value: n}, nil
}

func (s *KVServer) addLocked(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	cur, err := s.kv.Get(ctx, key)
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return 0, err
	}
	n, v, err := AddCounter(cur, delta)
	if err != nil {
		return 0, err
	}
	return n, s.kv.Put(ctx, key, v, ttl)
}

// AddCounter adds delta to the counter encoded in cur (nil is 0) and
// returns the sum and its encoding, or ErrInvalidRequest when cur is no
// counter or the sum overflows.
func AddCounter(cur []byte, delta int64) (int64, []byte, error) {
	var old int64
	if cur != nil {
		var ok bool
		if old, ok = sdk.DecodeCounter(cur); !ok {
			return 0, nil, &sdk.Error{Code: sdk.CodeInvalidRequest, Message: "kv: the value under the key is not a counter"}
		}
	}
	n := old + delta
	if (delta > 0 && n < old) || (delta < 0 && n > old) {
		return 0, nil, &sdk.Error{Code: sdk.CodeInvalidRequest, Message: "kv: counter overflows"}
	}
	return n, sdk.EncodeCounter(n), nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
