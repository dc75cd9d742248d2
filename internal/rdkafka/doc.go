// Package rdkafka is the gateway's own small binding of librdkafka's C API,
// for the hot paths. The producer: one cgo call enqueues a whole batch, a
// message's opaque is an integer, and delivery reports are collected in C
// and handed to Go in bulk, one cgo call per Poll. The consumer: one cgo call
// per Poll takes a batch of fetched records (copied into one C arena, then
// into one Go allocation per record), with rebalances and commit results
// returned as events in their place among the records.
//
// The package declares the part of the C API it uses in its own header,
// api.h (it does not include rdkafka.h), and links the static librdkafka
// that confluent-kafka-go bundles, which is why it imports that package. The
// header checks the layouts it declares with static asserts against the
// numbers of librdkafka 2.11.1, and TestDeclaredLayoutMatchesTheVendoredHeader
// compiles a C program against the header shipped in the confluent-kafka-go
// module to compare every size, offset, flag and error code with the package's
// own, so an upgrade of librdkafka that moves a field fails the tests.
//
// Memory rules: C never keeps a Go pointer. Produce copies a batch's keys,
// values and header names into one byte arena and describes each message with
// offsets into it; librdkafka copies the bytes (RD_KAFKA_MSG_F_COPY) before
// the call returns. Lists of partitions are built in C from Go memory that
// holds no pointers. Delivery reports, logs, statistics, client errors and a
// consumer's fetched batch are written by C into C memory (the callbacks'
// under a mutex, since librdkafka runs them on whichever thread serves its
// queue or, for logs, on its own threads) and copied out by Go.
//
// Each topic gets one librdkafka topic handle, created by the first Produce
// to it and kept until Close: passing the topic's name with every message
// instead makes librdkafka look the topic up per message, and measured no
// cheaper with one topic.
//
// # Tests
//
// Most tests run librdkafka against the in-process broker kfake; one round
// trip and the produce benchmarks use the real broker named by
// GATEWAY_TEST_KAFKA (skipped without it, unless
// GATEWAY_TEST_REQUIRE_SERVICES=1). Both of these runs must pass: the race
// detector, and cgo's full pointer checks, which are a build-time experiment:
//
//	go test -race -count=1 ./internal/rdkafka/
//	GOEXPERIMENT=cgocheck2 go test -count=1 ./internal/rdkafka/
//
// The layout test needs gcc on the PATH and the go command (it asks
// `go list -m` where the confluent-kafka-go module is).
package rdkafka
