package socket

// fanout is the goroutine that takes the chip's interrupt edges from the
// transport and signals every connection that asked for them. It runs
// only while such a connection exists, so with none the edges stay
// pending on the transport's line, as in-process; an edge it took after
// the last subscriber left is latched for the next one.
type fanout struct {
	stop, done chan struct{}
}

// subscribe adds sc to the connections that get interrupts and tells it
// the level of the line: one interrupt message at once if the line is
// asserted (or an edge was latched while nobody listened, or the level
// is unknown).
func (s *Server) subscribe(sc *serverConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs[sc] = struct{}{}
	s.refreshExempt()
	if s.irqLatch || s.cfg.IRQLevel == nil || s.cfg.IRQLevel() {
		s.irqLatch = false
		socketSignal(sc.irq)
	}
	if s.fan == nil {
		f := &fanout{stop: make(chan struct{}), done: make(chan struct{})}
		s.fan = f
		go s.runFanout(f)
	}
}

// unsubscribe removes sc, stopping the fan-out after the last one. Its
// interrupt writer has stopped: an edge it did not deliver (pending, or
// its write failed) is latched for the next subscriber if no other
// connection got it.
func (s *Server) unsubscribe(sc *serverConn) {
	s.mu.Lock()
	if _, ok := s.subs[sc]; !ok {
		s.mu.Unlock()
		return
	}
	delete(s.subs, sc)
	undelivered := sc.edgeLost
	select {
	case <-sc.irq:
		undelivered = true
	default:
	}
	if undelivered && len(s.subs) == 0 {
		s.irqLatch = true
	}
	s.refreshExempt()
	var f *fanout
	if len(s.subs) == 0 {
		f, s.fan = s.fan, nil
	}
	s.mu.Unlock()
	if f != nil {
		close(f.stop)
		<-f.done
	}
}

func (s *Server) runFanout(f *fanout) {
	defer close(f.done)
	s.log.Debug("interrupt fan-out started")
	defer s.log.Debug("interrupt fan-out stopped")
	line := s.tr.Interrupt()
	for {
		select {
		case <-f.stop:
			return
		case <-line:
			s.mu.Lock()
			if len(s.subs) == 0 {
				s.irqLatch = true
			}
			for sc := range s.subs {
				socketSignal(sc.irq)
			}
			s.mu.Unlock()
		}
	}
}

// socketSignal posts a coalesced edge on ch without blocking.
func socketSignal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
