// Package rdkafka is the gateway's own small binding of librdkafka's producer
// C API, for the hot produce path: one cgo call enqueues a whole batch, a
// message's opaque is an integer, and delivery reports are collected in C and
// handed to Go in bulk, one cgo call per Poll.
//
// The package declares the part of the C API it uses in its own cgo preamble
// (it does not include rdkafka.h) and links the static librdkafka that
// confluent-kafka-go bundles, which is why it imports that package. The
// preamble checks the layouts it declares with static asserts against the
// numbers of librdkafka 2.11.1, and TestDeclaredLayoutMatchesTheVendoredHeader
// compiles a C program against the header shipped in the confluent-kafka-go
// module to compare every size, offset, flag and error code with the package's
// own, so an upgrade of librdkafka that moves a field fails the tests.
//
// Memory rules: C never keeps a Go pointer. Produce copies a batch's keys,
// values and header names into one byte arena and describes each message with
// offsets into it; librdkafka copies the bytes (RD_KAFKA_MSG_F_COPY) before
// the call returns. Delivery reports, logs, statistics and client errors are
// written by C callbacks into C memory guarded by a mutex, since librdkafka
// runs those callbacks on whichever thread serves its queue (or, for logs, on
// its own threads).
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
