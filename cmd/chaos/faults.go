package main

// The fault scheduler: one fault at a time, each healed before the next,
// on loopback processes only. A compound fault is several at once: a
// rebalance while an app is slow, a broker killed during a rebalance, Redis
// killed during a revoke.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"time"
)

// Fault types.
const (
	faultGatewayKill       = "gateway-kill"         // SIGKILL the main gateway, restart it
	faultGatewayJoinLeave  = "gateway-join-leave"   // a second gateway joins the groups, then leaves (SIGTERM)
	faultGatewayJoinKill   = "gateway-join-kill"    // a second gateway joins, then is SIGKILLed
	faultBrokerKill        = "broker-kill"          // SIGKILL a broker, restart it
	faultBrokerStop        = "broker-stop"          // stop a broker (SIGTERM), restart it
	faultLeaderKill        = "leader-kill"          // SIGKILL the leader of a workload partition (cluster)
	faultRedisKill         = "redis-kill"           // SIGKILL Redis, restart it
	faultAppCancel         = "app-cancel"           // an app cancels its streams (abandoning the batch in hand) and subscribes again
	faultAppKill           = "app-kill"             // SIGKILL an app process
	faultAppCrashBeforeAck = "app-crash-before-ack" // an app SIGKILLs itself between processing and ack
	faultSlowApp           = "slow-app"             // an app holds its acks past max.poll.interval.ms
	faultSlowAppLease      = "slow-app-lease"       // an app takes longer than the ack timeout over one batch, then acks it
	faultAppLateAck        = "app-late-ack"         // an app's stream breaks mid-batch; it acks the batch afterwards

	// Compound faults.
	faultRebalanceSlowApp = "rebalance-during-slow-app"    // a second gateway joins while an app holds its acks, and leaves
	faultBrokerKillRebal  = "broker-kill-during-rebalance" // a broker is SIGKILLed while a second gateway joins
	faultRedisKillRevoke  = "redis-kill-during-revoke"     // Redis is SIGKILLed as the main gateway revokes partitions
)

// allFaults are the known fault kinds.
var allFaults = []string{faultGatewayKill, faultGatewayJoinLeave, faultGatewayJoinKill, faultBrokerKill, faultBrokerStop, faultLeaderKill,
	faultRedisKill, faultAppCancel, faultAppKill, faultAppCrashBeforeAck, faultSlowApp, faultSlowAppLease, faultAppLateAck,
	faultRebalanceSlowApp, faultBrokerKillRebal, faultRedisKillRevoke}

// mayRedeliver are the faults after which a group without dedupe may
// legitimately deliver acked records again (at-least-once): a member dies
// before its acked offsets are committed, or loses its assignment because
// its coordinator is gone for longer than the session timeout, or hands
// partitions over in a rebalance while records acked out of order lie
// beyond the first unfinished one (the commit is the contiguous acked
// prefix, and the new owner starts there); or an app acks a batch after its
// stream broke, which without dedupe another stream was given at once.
var mayRedeliver = []string{faultGatewayKill, faultGatewayJoinLeave, faultGatewayJoinKill, faultBrokerKill, faultBrokerStop, faultLeaderKill, faultAppLateAck,
	faultRebalanceSlowApp, faultBrokerKillRebal, faultRedisKillRevoke}

// faultEvent is one injected fault.
type faultEvent struct {
	kind        string
	detail      string
	start, heal time.Time
}

type scheduler struct {
	h   *harness
	rng *rand.Rand
	log func(format string, args ...any)

	events []faultEvent
}

// inject runs one fault and returns when it is healed.
func (s *scheduler) inject(ctx context.Context, kind string) error {
	h := s.h
	ev := faultEvent{kind: kind, start: time.Now()}
	var err error
	switch kind {
	case faultGatewayKill:
		ev.detail = h.state()
		h.gwA.kill()
		sleep(ctx, time.Duration(500+s.rng.IntN(1500))*time.Millisecond)
		err = h.gwA.start(ctx)
	case faultGatewayJoinLeave, faultGatewayJoinKill:
		if err = h.gwB.start(ctx); err != nil {
			break
		}
		sleep(ctx, time.Duration(10+s.rng.IntN(6))*time.Second)
		if kind == faultGatewayJoinKill {
			ev.detail = h.state()
			h.gwB.kill()
		} else {
			h.gwB.stop(30 * time.Second)
		}
	case faultBrokerKill, faultBrokerStop:
		ev.detail, err = s.brokerFault(ctx, kind == faultBrokerStop)
	case faultLeaderKill:
		var leaders map[int32]int32
		leaders, err = partitionLeaders(h.bootstrap, h.topic)
		if err != nil {
			break
		}
		p := int32(s.rng.IntN(len(leaders)))
		node := strconv.Itoa(int(leaders[p]))
		ev.detail = fmt.Sprintf("partition %d leader node %s", p, node)
		if err = h.kafka.run("kill", node); err != nil {
			break
		}
		release := reservePorts(h.brokerPorts(node)...)
		sleep(ctx, time.Duration(2+s.rng.IntN(4))*time.Second)
		err = h.kafka.run("start", node)
		release()
	case faultRedisKill:
		err = s.redisKill(ctx)
	case faultAppCancel:
		a := h.appsA[s.rng.IntN(len(h.appsA))]
		ev.detail = a.name
		err = a.command("cancel")
	case faultAppKill:
		a := h.appsA[s.rng.IntN(len(h.appsA))]
		ev.detail = a.name
		a.kill()
	case faultAppCrashBeforeAck:
		a := h.appsA[s.rng.IntN(len(h.appsA))]
		ev.detail = a.name
		if err = a.command("crash"); err != nil {
			break
		}
		if !a.waitDeath(30 * time.Second) {
			a.kill() // it got no batch to crash on
			ev.detail += " (no batch within 30s: killed)"
		}
	case faultAppLateAck:
		a := h.appsA[s.rng.IntN(len(h.appsA))]
		ev.detail = a.name
		err = a.command("late-ack")
		sleep(ctx, 2*time.Second)
	case faultSlowApp:
		// Quiet first: a rebalance still settling from the previous fault
		// is not the slow app's.
		h.waitNoAssignments(ctx, 5*time.Second, 45*time.Second)
		a := h.appsA[s.rng.IntN(len(h.appsA))]
		ev.detail = a.name
		ev.start = time.Now()
		hold := h.maxPollInterval + 4*time.Second
		if err = a.command("slow " + hold.String()); err != nil {
			break
		}
		sleep(ctx, hold+2*time.Second)
	case faultSlowAppLease:
		// The app's next batch takes longer than the ack timeout: its
		// records go to another delivery meanwhile, and its late ack must
		// be refused.
		h.waitNoAssignments(ctx, 5*time.Second, 45*time.Second)
		a := h.appsA[s.rng.IntN(len(h.appsA))]
		ev.detail = a.name
		ev.start = time.Now()
		hold := h.ackTimeout + 5*time.Second
		if err = a.command("slow-lease " + hold.String()); err != nil {
			break
		}
		sleep(ctx, hold+3*time.Second)
	case faultRebalanceSlowApp:
		// An app holds its acks (below the ack timeout) while a second
		// gateway joins: the revoke grace runs out with the app's records
		// in its hands, and its acks come after the revoke.
		a := h.appsA[s.rng.IntN(len(h.appsA))]
		hold := h.maxPollInterval + 4*time.Second
		ev.detail = a.name
		if err = a.command("slow " + hold.String()); err != nil {
			break
		}
		sleep(ctx, time.Second)
		if err = h.gwB.start(ctx); err != nil {
			break
		}
		sleep(ctx, hold)
		h.gwB.stop(30 * time.Second)
	case faultBrokerKillRebal:
		// The second gateway's apps subscribe within a second of it
		// serving: the rebalance is under way when the broker dies.
		if err = h.gwB.start(ctx); err != nil {
			break
		}
		sleep(ctx, time.Duration(300+s.rng.IntN(1200))*time.Millisecond)
		if ev.detail, err = s.brokerFault(ctx, false); err != nil {
			break
		}
		sleep(ctx, time.Duration(6+s.rng.IntN(6))*time.Second)
		h.gwB.stop(30 * time.Second)
	case faultRedisKillRevoke:
		// Redis dies as soon as the main gateway's apps are told of a
		// revocation, while the revoke grace waits for their acks (whose
		// done markers need Redis) and claims are retained or released.
		since := time.Now().UnixNano()
		if err = h.gwB.start(ctx); err != nil {
			break
		}
		if !h.waitRevoke(ctx, since, 15*time.Second) {
			ev.detail = "no revocation within 15s"
		}
		if err = s.redisKill(ctx); err != nil {
			break
		}
		sleep(ctx, time.Duration(6+s.rng.IntN(6))*time.Second)
		h.gwB.stop(30 * time.Second)
	default:
		return fmt.Errorf("unknown fault %q", kind)
	}
	ev.heal = time.Now()
	s.events = append(s.events, ev)
	if err != nil {
		return fmt.Errorf("%s: %w", kind, err)
	}
	s.log("fault %-22s %-28s healed after %.1fs", kind, ev.detail, ev.heal.Sub(ev.start).Seconds())
	return nil
}

// brokerFault SIGKILLs (or stops) a broker, a random one of the cluster,
// and starts it again after 1–3 s; it returns which.
func (s *scheduler) brokerFault(ctx context.Context, graceful bool) (string, error) {
	h := s.h
	verb := "kill"
	if graceful {
		verb = "stop"
	}
	node, service, detail := "", "kafka", ""
	if h.cluster {
		node = strconv.Itoa(1 + s.rng.IntN(3))
		service, detail = node, "node "+node
	}
	if err := h.kafka.run(verb, service); err != nil {
		return detail, err
	}
	release := reservePorts(h.brokerPorts(node)...)
	defer release()
	sleep(ctx, time.Duration(1+s.rng.IntN(3))*time.Second)
	return detail, h.kafka.run("start", service)
}

// redisKill SIGKILLs Redis and starts it again after 1–3 s.
func (s *scheduler) redisKill(ctx context.Context) error {
	h := s.h
	if err := h.redis.run("kill", "redis"); err != nil {
		return err
	}
	release := reservePorts(portOf(h.redisAddr))
	defer release()
	sleep(ctx, time.Duration(1+s.rng.IntN(3))*time.Second)
	return h.redis.run("start", "redis")
}

// plan orders the faults of a run: every kind at least once, shuffled, and
// then more rounds while they fit in duration (estimated per fault).
func plan(rng *rand.Rand, kinds []string, rounds int) []string {
	var out []string
	for range max(rounds, 1) {
		round := slices.Clone(kinds)
		rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		out = append(out, round...)
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// waitNoAssignments waits until no app has seen an assignment change for
// quiet, at most limit.
func (h *harness) waitNoAssignments(ctx context.Context, quiet, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		groups, err := h.ledgers.refresh()
		if err != nil {
			return
		}
		var last int64
		for _, gl := range groups {
			for _, t := range gl.assigns {
				last = max(last, t)
			}
		}
		if time.Since(time.Unix(0, last)) >= quiet {
			return
		}
		sleep(ctx, 500*time.Millisecond)
	}
}

// waitRevoke waits until an app of the main gateway is told of a
// revocation after since (Unix ns), at most limit.
func (h *harness) waitRevoke(ctx context.Context, since int64, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		groups, err := h.ledgers.refresh()
		if err != nil {
			return false
		}
		for _, gl := range groups {
			for _, t := range gl.revokes {
				if t > since {
					return true
				}
			}
		}
		sleep(ctx, 50*time.Millisecond)
	}
	return false
}

// state describes what a gateway kill hits: records in unanswered produce
// calls, deliveries not yet answered, and acks answered OK within the last
// commit interval (most of them not committed yet).
func (h *harness) state() string {
	produce := h.load.inflight.Load()
	groups, err := h.ledgers.refresh()
	if err != nil {
		return ""
	}
	now := time.Now()
	since, leased := now.Add(-h.commitInterval).UnixNano(), now.Add(-h.ackTimeout).UnixNano()
	var inflight, recent int
	for _, gl := range groups {
		for _, ds := range gl.byMsg {
			for _, d := range ds {
				switch {
				case d.outcome == 0 && !d.skipped && d.recv >= leased:
					inflight++
				case d.acked() && d.answered >= since:
					recent++
				}
			}
		}
	}
	return fmt.Sprintf("produce %d, unanswered %d, acked<%v %d", produce, inflight, h.commitInterval, recent)
}

// brokerPorts are the listener and controller ports of a broker: the
// single broker's (KAFKA_PORT, KAFKA_CONTROLLER_PORT as scripts/services.sh
// reads them), or cluster node's (CLUSTER_PORT_BASE as scripts/cluster.sh
// reads it).
func (h *harness) brokerPorts(node string) []int {
	env := func(name string, def int) int {
		if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
			return n
		}
		return def
	}
	if !h.cluster {
		return []int{portOf(h.bootstrap), env("KAFKA_CONTROLLER_PORT", 19093)}
	}
	n, _ := strconv.Atoi(node)
	base := env("CLUSTER_PORT_BASE", 29100)
	return []int{base + n, base + 10 + n}
}
