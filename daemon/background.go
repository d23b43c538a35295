package daemon

import (
	"net"
	"strconv"
	"sync"
)

// background runs the daemon's after-the-answer work (webhook retries) and
// lets Close stop and wait for it.
type background struct {
	wg   sync.WaitGroup
	stop chan struct{}
	once sync.Once
}

func newBackground() *background { return &background{stop: make(chan struct{})} }

// Go runs fn; fn should return soon after stop closes.
func (b *background) Go(fn func(stop <-chan struct{})) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn(b.stop)
	}()
}

// Close stops the work and waits for it.
func (b *background) Close() {
	b.once.Do(func() { close(b.stop) })
	b.wg.Wait()
}

func splitHostPort(hostport string) (string, int, error) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	return host, port, err
}
