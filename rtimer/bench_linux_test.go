package rtimer

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkSleep compares the ways to wait 10, 30 and 80 µs in real
// time: the time package, this service (timerfd through the netpoller),
// the service polling the last DefaultSpin of each wait (SetSpin), and
// nanosleep on the calling goroutine's thread (what clock_nanosleep on a
// locked thread would give, timer slack included). Per sleep it reports
// the lateness (p50, p99, beyond the requested duration) and the CPU the
// process used (user+system), so "precise without spinning" shows:
//
//	go test ./rtimer -run - -bench Sleep -benchtime 2000x
func BenchmarkSleep(b *testing.B) {
	s, err := Start()
	if err != nil {
		b.Skip(err)
	}
	defer s.Close()
	sp, err := Start()
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	sp.SetSpin(DefaultSpin)
	ways := []struct {
		name  string
		sleep func(time.Duration)
	}{
		{"time.Sleep", time.Sleep},
		{"rtimer", s.Sleep},
		{"rtimer+spin", sp.Sleep},
		{"nanosleep", func(d time.Duration) {
			ts := unix.NsecToTimespec(int64(d))
			for unix.Nanosleep(&ts, &ts) == unix.EINTR {
			}
		}},
	}
	for _, d := range []time.Duration{10 * time.Microsecond, 30 * time.Microsecond, 80 * time.Microsecond} {
		for _, w := range ways {
			b.Run(w.name+"/"+d.String(), func(b *testing.B) {
				late := make([]time.Duration, 0, b.N)
				cpu0 := cpuTime(b)
				b.ResetTimer()
				for b.Loop() {
					t0 := time.Now()
					w.sleep(d)
					late = append(late, time.Since(t0)-d)
				}
				b.StopTimer()
				cpu := cpuTime(b) - cpu0
				slices.Sort(late)
				b.ReportMetric(float64(late[len(late)/2].Nanoseconds()), "late-p50-ns")
				b.ReportMetric(float64(late[len(late)*99/100].Nanoseconds()), "late-p99-ns")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(len(late)), "cpu-ns/op")
			})
		}
	}
}

// cpuTime is the user+system CPU the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
