package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

// settleBatch is a settle the app sent in its Consume stream, waiting for
// its answer: the deliveries it acks or nacks, and what a nack meant.
type settleBatch struct {
	acks, nacks []held
	nackEvent   byte // evNacked, or evDeadLetter for poison
}

// consumeOnce is subscribeOnce over a Consume stream: the same workload and
// faults, with credit granted for every delivery settled, and acks and
// nacks settled in band. Outcomes come back in settled frames: APPLIED is
// an OK answer, STALE a refusal, PENDING (a dedupe marker not yet written)
// an ack of unknown fate. When the stream ends, the settles not answered
// yet are of unknown fate too (acks) or leave their deliveries held until
// their deadline (nacks); a late ack cannot be sent, since tokens die with
// their stream, so app-late-ack abandons the batch.
func (a *app) consumeOnce(ctx context.Context, rng *rand.Rand, req *gatewayv1.SubscribeRequest) error {
	st, err := a.client.Consume(ctx)
	if err != nil {
		return err
	}
	window := int64(req.GetMaxInFlight())
	if err := st.Send(&gatewayv1.ConsumeRequest{Request: &gatewayv1.ConsumeRequest_Start{Start: &gatewayv1.ConsumeStart{
		Subscription: req, Credit: &gatewayv1.Credit{Records: window, Bytes: 1 << 40},
	}}}); err != nil {
		return err
	}
	pending := map[uint64]settleBatch{}
	var seq uint64
	defer func() {
		for _, b := range pending {
			if len(b.acks) > 0 {
				a.events(evUnknown, b.acks)
			}
		}
	}()
	settle := func(b settleBatch, retryAfter *durationpb.Duration, deadLetter bool) error {
		seq++
		s := &gatewayv1.Settle{Sequence: seq, RetryAfter: retryAfter, DeadLetter: deadLetter, Reason: "chaos",
			Credit: &gatewayv1.Credit{Records: int64(len(b.acks) + len(b.nacks))}}
		for _, h := range b.acks {
			s.Acks = append(s.Acks, h.d.GetToken())
		}
		for _, h := range b.nacks {
			s.Nacks = append(s.Nacks, h.d.GetToken())
		}
		if deadLetter {
			s.Reason = "poison"
		}
		if len(b.acks) > 0 {
			a.events(evAckSent, b.acks)
		}
		a.events(evNackSent, b.nacks)
		pending[seq] = b
		return st.Send(&gatewayv1.ConsumeRequest{Request: &gatewayv1.ConsumeRequest_Settle{Settle: s}})
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err // frames not read yet are dropped with the stream
		}
		switch f := resp.GetFrame().(type) {
		case *gatewayv1.ConsumeResponse_Assignment:
			a.write(fmt.Appendf(nil, "%c %d %d %d\n", evAssignFrame, time.Now().UnixNano(), len(f.Assignment.GetAssigned()), len(f.Assignment.GetRevoked())))
			continue
		case *gatewayv1.ConsumeResponse_Settled:
			b, ok := pending[f.Settled.GetSequence()]
			if !ok {
				continue
			}
			delete(pending, f.Settled.GetSequence())
			a.settled(b, f.Settled)
			continue
		case *gatewayv1.ConsumeResponse_Deliveries:
			poison, nack, process := a.receive(rng, f.Deliveries.GetDeliveries())
			if len(poison) > 0 {
				if err := settle(settleBatch{nacks: poison, nackEvent: evDeadLetter}, nil, true); err != nil {
					return err
				}
			}
			if len(nack) > 0 {
				if err := settle(settleBatch{nacks: nack, nackEvent: evNacked}, durationpb.New(200*time.Millisecond), false); err != nil {
					return err
				}
			}
			if len(process) == 0 {
				continue
			}
			if a.crash.Load() {
				// Processed, not acked: the harness's "app killed between
				// processing and ack".
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
			if rng.Float64() < a.cfg.pDelay {
				time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			}
			if until := a.slowUntil.Load(); until > time.Now().UnixNano() {
				time.Sleep(time.Duration(until - time.Now().UnixNano()))
			}
			if d := a.slowLease.Swap(0); d > 0 {
				time.Sleep(time.Duration(d))
			}
			if a.lateAck.CompareAndSwap(true, false) || rng.Float64() < a.cfg.pDisconnect {
				// The stream breaks while the batch is in hand: its tokens
				// die with it, so the batch is abandoned unacked.
				return errDropped
			}
			if ctx.Err() != nil {
				return ctx.Err() // "cancel": the batch in hand is abandoned
			}
			if err := settle(settleBatch{acks: process}, nil, false); err != nil {
				return err
			}
		}
	}
}

// settled records the outcomes of one answered settle.
func (a *app) settled(b settleBatch, s *gatewayv1.Settled) {
	var acked, refused, unknown, nacked, failed []held
	for i, h := range b.acks {
		switch settleOutcome(s.GetAcks(), i) {
		case gatewayv1.SettleOutcome_SETTLE_OUTCOME_APPLIED:
			acked = append(acked, h)
		case gatewayv1.SettleOutcome_SETTLE_OUTCOME_STALE:
			refused = append(refused, h)
		default: // PENDING: applied, its done marker not yet written
			unknown = append(unknown, h)
		}
	}
	for i, h := range b.nacks {
		if settleOutcome(s.GetNacks(), i) == gatewayv1.SettleOutcome_SETTLE_OUTCOME_APPLIED {
			nacked = append(nacked, h)
		} else {
			failed = append(failed, h)
		}
	}
	a.events(evAcked, acked)
	a.events(evRefused, refused)
	a.events(evUnknown, unknown)
	a.events(b.nackEvent, nacked)
	a.events(evNackFailed, failed)
}

func settleOutcome(os []gatewayv1.SettleOutcome, i int) gatewayv1.SettleOutcome {
	if i < len(os) {
		return os[i]
	}
	return gatewayv1.SettleOutcome_SETTLE_OUTCOME_UNSPECIFIED
}
