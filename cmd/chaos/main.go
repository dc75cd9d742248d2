// Command chaos checks the gateway's delivery claims under faults, the way
// Jepsen checks histories: a workload producer writes uniquely identified,
// per-key sequenced records through the real gateway binary; workload apps
// consume them through the gateway in two groups (ORDERING_KEY and
// ORDERING_NONE) into ledger files, misbehaving on purpose; a scheduler
// injects faults one at a time (gateway SIGKILL and restart, a second
// gateway joining and leaving, broker stop/kill, Redis kill, app stream
// cancellation, app SIGKILL between processing and ack, an app slower than
// max.poll.interval.ms); then a checker reads the topic back and the
// ledgers, prints a summary table and exits non-zero on any violation.
//
// Usage:
//
//	chaos [--profile short|long|cluster] [--dedupe=true] [--seed N] ...
//	chaos app ...   (the workload app; started by the harness)
//
// The broker and Redis are the ones scripts/services.sh runs (addresses
// from GATEWAY_TEST_KAFKA and GATEWAY_TEST_REDIS, as `services.sh env`
// prints them); the cluster profile uses scripts/cluster.sh's three brokers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

func main() {
	var err error
	if len(os.Args) > 1 && os.Args[1] == "app" {
		err = runApp(os.Args[2:])
	} else {
		var pass bool
		pass, err = runHarness(os.Args[1:])
		if err == nil && !pass {
			os.Exit(1)
		}
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
}

// profile is a named set of defaults.
type profile struct {
	faults     []string
	rounds     int
	rate       float64
	partitions int
	gap        time.Duration
	cluster    bool
}

var baseFaults = []string{
	faultGatewayKill, faultGatewayJoinLeave, faultBrokerKill, faultBrokerStop, faultRedisKill,
	faultAppCancel, faultAppLateAck, faultAppKill, faultAppCrashBeforeAck, faultSlowApp,
}

var profiles = map[string]profile{
	// short: every fault once; about three minutes on two busy cores.
	"short": {faults: baseFaults, rounds: 1, rate: 100, partitions: 6, gap: 3 * time.Second},
	// long: every fault several times, plus a second gateway killed.
	"long": {faults: append(slices.Clone(baseFaults), faultGatewayJoinKill), rounds: 4, rate: 200, partitions: 8, gap: 4 * time.Second},
	// cluster: three brokers (replication 3, min.insync.replicas 2),
	// partition leaders killed.
	"cluster": {faults: append(slices.Clone(baseFaults), faultLeaderKill, faultLeaderKill, faultGatewayJoinKill), rounds: 2, rate: 150, partitions: 6, gap: 4 * time.Second, cluster: true},
}

type harness struct {
	bootstrap, redisAddr, topic string
	cluster                     bool
	kafka, redis                services
	gwA, gwB                    *gatewayProc
	appsA, appsB                []*appProc
	dir                         string
	maxPollInterval             time.Duration
	appGroup                    map[string]string
	load                        *workload
	commitInterval              time.Duration
}

func runHarness(argv []string) (bool, error) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	profName := fs.String("profile", "short", "short, long or cluster")
	dedupeOn := fs.Bool("dedupe", true, "run the gateways with dedupe.enabled")
	seed := fs.Uint64("seed", 0, "random seed (0: from the clock)")
	rate := fs.Float64("rate", 0, "records per second (0: the profile's)")
	rounds := fs.Int("rounds", 0, "rounds of the fault list (0: the profile's)")
	faultList := fs.String("faults", "", "comma-separated fault kinds (default: the profile's); none for a run without faults")
	warmup := fs.Duration("warmup", 8*time.Second, "load before the first fault")
	tail := fs.Duration("tail", 10*time.Second, "load after the last fault")
	drainLimit := fs.Duration("liveness", 180*time.Second, "bound on the drain after the last heal")
	gatewayBin := fs.String("gateway", "bin/gateway", "the gateway binary")
	servicesScript := fs.String("services", "scripts/services.sh", "the single-node service script (Kafka and Redis)")
	clusterScript := fs.String("cluster-script", "scripts/cluster.sh", "the three-broker cluster script")
	workDir := fs.String("work-dir", ".cache/chaos", "where runs keep logs and ledgers")
	if err := fs.Parse(argv); err != nil {
		return false, err
	}
	prof, ok := profiles[*profName]
	if !ok {
		return false, fmt.Errorf("--profile %q: want short, long or cluster", *profName)
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	if *rate > 0 {
		prof.rate = *rate
	}
	if *rounds > 0 {
		prof.rounds = *rounds
	}
	if *faultList != "" {
		prof.faults = nil
		if *faultList != "none" {
			prof.faults = strings.Split(*faultList, ",")
		}
	}
	rng := rand.New(rand.NewPCG(*seed, 0x636861_6f73))
	self, err := os.Executable()
	if err != nil {
		return false, err
	}
	runID := fmt.Sprintf("%s-%d", time.Now().UTC().Format("20060102-150405"), *seed%100000)
	h := &harness{
		commitInterval:  2 * time.Second,
		cluster:         prof.cluster,
		redis:           services{script: *servicesScript},
		kafka:           services{script: *servicesScript},
		dir:             filepath.Join(*workDir, runID),
		maxPollInterval: 10 * time.Second,
		topic:           "chaos-" + runID,
		appGroup:        map[string]string{},
	}
	if prof.cluster {
		h.kafka = services{script: *clusterScript}
		h.bootstrap = os.Getenv("GATEWAY_CLUSTER_KAFKA")
	} else {
		h.bootstrap = os.Getenv("GATEWAY_TEST_KAFKA")
	}
	h.redisAddr = os.Getenv("GATEWAY_TEST_REDIS")
	if h.bootstrap == "" || h.redisAddr == "" {
		return false, errors.New("GATEWAY_TEST_KAFKA (GATEWAY_CLUSTER_KAFKA for the cluster profile) and GATEWAY_TEST_REDIS must name the running services (scripts/chaos.sh sets them)")
	}
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		return false, err
	}
	logf := func(format string, args ...any) {
		fmt.Printf("%s %s\n", time.Now().Format("15:04:05.0"), fmt.Sprintf(format, args...))
	}
	logf("run %s: profile %s, dedupe %v, seed %d, %.0f records/s, faults %v × %d; logs and ledgers in %s",
		runID, *profName, *dedupeOn, *seed, prof.rate, prof.faults, prof.rounds, h.dir)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	start := time.Now()

	replicas, minISR := 1, 0
	if prof.cluster {
		replicas, minISR = 3, 2
	}
	if err := createTopic(h.bootstrap, h.topic, prof.partitions, replicas, minISR); err != nil {
		return false, err
	}
	gwArgs := []string{
		"--embedded.enabled=false",
		"--kafka.bootstrap_servers=" + h.bootstrap,
		"--consumer.commit_interval=" + h.commitInterval.String(),
		"--consumer.revoke_grace=3s",
		"--consumer.drain_timeout=3s",
		"--consumer.properties.session.timeout.ms=6000",
		"--consumer.properties.max.poll.interval.ms=" + strconv.FormatInt(h.maxPollInterval.Milliseconds(), 10),
		"--server.drain_timeout=5s",
	}
	if *dedupeOn {
		gwArgs = append(gwArgs, "--dedupe.enabled=true", "--dedupe.redis.addrs="+h.redisAddr,
			"--dedupe.key_prefix=chaos-"+runID+":", "--dedupe.hold_retry=250ms")
	}
	addrA, err := freePort()
	if err != nil {
		return false, err
	}
	addrB, err := freePort()
	if err != nil {
		return false, err
	}
	h.gwA = &gatewayProc{name: "a", bin: *gatewayBin, addr: addrA, args: gwArgs, dir: h.dir}
	h.gwB = &gatewayProc{name: "b", bin: *gatewayBin, addr: addrB, args: gwArgs, dir: h.dir}
	if err := h.gwA.start(ctx); err != nil {
		return false, err
	}
	defer h.gwA.kill()
	defer h.gwB.kill()

	groups := map[string]string{"chaos-" + runID + "-key": "key", "chaos-" + runID + "-none": "none"}
	stopped := make(chan struct{})
	var appWG sync.WaitGroup
	n := 0
	for _, gw := range []*gatewayProc{h.gwA, h.gwB} {
		for _, ordering := range []string{"key", "none"} {
			group := "chaos-" + runID + "-" + ordering
			streams := 2
			if gw == h.gwB {
				streams = 1
			}
			n++
			name := fmt.Sprintf("%s-%s", ordering, gw.name)
			a := &appProc{name: name, bin: self, dir: h.dir, stopped: stopped, args: []string{
				"--addr", gw.addr, "--group", group, "--topic", h.topic, "--ordering", ordering,
				"--streams", strconv.Itoa(streams), "--seed", strconv.FormatUint(*seed+uint64(n), 10),
			}}
			h.appGroup[name] = group
			if gw == h.gwA {
				h.appsA = append(h.appsA, a)
			} else {
				h.appsB = append(h.appsB, a)
			}
			a.supervise(&appWG)
		}
	}
	stopApps := sync.OnceFunc(func() { close(stopped); appWG.Wait() })
	defer stopApps()

	conn, err := dialGateway(h.gwA.addr)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	wl := &workload{topic: h.topic, writers: 4, keys: 48, batch: 5, rate: prof.rate, client: gatewayv1.NewProducerServiceClient(conn)}
	h.load = wl
	wlCtx, stopLoad := context.WithCancel(ctx)
	wlDone := make(chan struct{})
	go func() { wl.run(wlCtx); close(wlDone) }()

	sched := &scheduler{h: h, rng: rng, log: logf}
	sleep(ctx, *warmup)
	var harnessErr error
	for i, kind := range plan(rng, prof.faults, prof.rounds) {
		if ctx.Err() != nil {
			break
		}
		if i > 0 {
			sleep(ctx, prof.gap)
		}
		if err := sched.inject(ctx, kind); err != nil {
			harnessErr = err
			break
		}
	}
	lastHeal := time.Now()
	if harnessErr == nil {
		sleep(ctx, *tail)
	}
	stopLoad()
	<-wlDone
	loadStopped := time.Now()
	attempts := wl.snapshot()
	logf("workload stopped: %d records attempted", len(attempts))
	if err := writeProduceLog(filepath.Join(h.dir, "produce.log"), attempts); err != nil {
		return false, err
	}
	if harnessErr != nil {
		return false, harnessErr
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}

	topic, err := readTopic(h.bootstrap, h.topic, 2*time.Minute)
	if err != nil {
		return false, err
	}
	slices.SortFunc(topic, func(a, b topicRecord) int {
		if a.partition != b.partition {
			return int(a.partition - b.partition)
		}
		return int(a.offset - b.offset)
	})
	logf("topic read back: %d records; waiting for the apps to drain it (at most %v after the last heal)", len(topic), *drainLimit)

	rep := &report{runID: runID, seed: *seed, profile: *profName, dedupe: *dedupeOn, drainLimit: *drainLimit}
	var ledgers map[string]*groupLedger
	for {
		ledgers, err = readLedgers(h.dir, h.appGroup)
		if err != nil {
			return false, err
		}
		ok, missing := drained(topic, ledgers)
		if ok {
			rep.drainedOK, rep.recovery, rep.drainAfterLoad = true, time.Since(lastHeal), time.Since(loadStopped)
			break
		}
		if time.Since(lastHeal) > *drainLimit {
			logf("not drained: %d records without a settled ack", missing)
			break
		}
		sleep(ctx, time.Second)
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
	}
	// Let late redeliveries (there should be none) reach the ledgers.
	sleep(ctx, 3*time.Second)
	stopApps()
	h.gwB.stop(30 * time.Second)
	h.gwA.stop(30 * time.Second)
	ledgers, err = readLedgers(h.dir, h.appGroup)
	if err != nil {
		return false, err
	}
	orderings := map[string]string{}
	for g, o := range groups {
		orderings[g] = o
	}
	check(rep, attempts, topic, ledgers, orderings, sched.events)
	rep.wall = time.Since(start)
	rep.print(os.Stdout)
	if f, err := os.Create(filepath.Join(h.dir, "summary.txt")); err == nil {
		rep.print(f)
		f.Close()
	}
	return len(rep.violations) == 0, nil
}
