package cable

import (
	"sync"
	"testing"
	"time"
)

// TestSendAfterClose: a frame sent into a closed cable, with room in its
// queue, is counted lost at close, not left in the queue uncounted; and
// frames sent while the cable closes are each delivered or counted.
func TestSendAfterClose(t *testing.T) {
	a, b := &port{}, &port{}
	c := Connect(a, b, Config{LinkBitsPerSec: -1})
	c.Close()
	a.wire.Send(make([]byte, 60), time.Now())
	if ab, _ := c.Stats(); ab.LostAtClose != 1 || ab.Frames != 0 {
		t.Fatalf("a frame sent after close: %+v, want it lost at close", ab)
	}

	for range 20 {
		a, b := &port{}, &port{}
		c := Connect(a, b, Config{LinkBitsPerSec: 100_000_000})
		const n = 200
		var wg sync.WaitGroup
		wg.Go(func() {
			for range n {
				a.wire.Send(make([]byte, 60), time.Now())
			}
		})
		time.Sleep(50 * time.Microsecond)
		c.Close()
		wg.Wait()
		if ab, _ := c.Stats(); ab.Frames+ab.LostAtClose != n {
			t.Fatalf("%d sent around close: %+v", n, ab)
		}
	}
}
