package rdkafka

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// The header name of every ErrorCode constant of the package.
var errorCodeEnumerators = []struct {
	code          ErrorCode
	goName, cName string
}{
	{ErrBadMsg, "ErrBadMsg", "RD_KAFKA_RESP_ERR__BAD_MSG"},
	{ErrBadCompression, "ErrBadCompression", "RD_KAFKA_RESP_ERR__BAD_COMPRESSION"},
	{ErrDestroy, "ErrDestroy", "RD_KAFKA_RESP_ERR__DESTROY"},
	{ErrFail, "ErrFail", "RD_KAFKA_RESP_ERR__FAIL"},
	{ErrTransport, "ErrTransport", "RD_KAFKA_RESP_ERR__TRANSPORT"},
	{ErrCritSysResource, "ErrCritSysResource", "RD_KAFKA_RESP_ERR__CRIT_SYS_RESOURCE"},
	{ErrResolve, "ErrResolve", "RD_KAFKA_RESP_ERR__RESOLVE"},
	{ErrMsgTimedOut, "ErrMsgTimedOut", "RD_KAFKA_RESP_ERR__MSG_TIMED_OUT"},
	{ErrUnknownPartition, "ErrUnknownPartition", "RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION"},
	{ErrUnknownTopic, "ErrUnknownTopic", "RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC"},
	{ErrAllBrokersDown, "ErrAllBrokersDown", "RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN"},
	{ErrInvalidArg, "ErrInvalidArg", "RD_KAFKA_RESP_ERR__INVALID_ARG"},
	{ErrTimedOut, "ErrTimedOut", "RD_KAFKA_RESP_ERR__TIMED_OUT"},
	{ErrQueueFull, "ErrQueueFull", "RD_KAFKA_RESP_ERR__QUEUE_FULL"},
	{ErrSSL, "ErrSSL", "RD_KAFKA_RESP_ERR__SSL"},
	{ErrState, "ErrState", "RD_KAFKA_RESP_ERR__STATE"},
	{ErrAuthentication, "ErrAuthentication", "RD_KAFKA_RESP_ERR__AUTHENTICATION"},
	{ErrTimedOutQueue, "ErrTimedOutQueue", "RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE"},
	{ErrUnsupportedFeature, "ErrUnsupportedFeature", "RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE"},
	{ErrPurgeQueue, "ErrPurgeQueue", "RD_KAFKA_RESP_ERR__PURGE_QUEUE"},
	{ErrPurgeInflight, "ErrPurgeInflight", "RD_KAFKA_RESP_ERR__PURGE_INFLIGHT"},
	{ErrFatal, "ErrFatal", "RD_KAFKA_RESP_ERR__FATAL"},
	{ErrInconsistent, "ErrInconsistent", "RD_KAFKA_RESP_ERR__INCONSISTENT"},
	{ErrGaplessGuarantee, "ErrGaplessGuarantee", "RD_KAFKA_RESP_ERR__GAPLESS_GUARANTEE"},
	{ErrUnknownBroker, "ErrUnknownBroker", "RD_KAFKA_RESP_ERR__UNKNOWN_BROKER"},
	{ErrFenced, "ErrFenced", "RD_KAFKA_RESP_ERR__FENCED"},
	{ErrAssignPartitions, "ErrAssignPartitions", "RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS"},
	{ErrRevokePartitions, "ErrRevokePartitions", "RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS"},
	{ErrNoOffset, "ErrNoOffset", "RD_KAFKA_RESP_ERR__NO_OFFSET"},
	{ErrUnknown, "ErrUnknown", "RD_KAFKA_RESP_ERR_UNKNOWN"},
	{ErrNoError, "ErrNoError", "RD_KAFKA_RESP_ERR_NO_ERROR"},
	{ErrInvalidMsg, "ErrInvalidMsg", "RD_KAFKA_RESP_ERR_INVALID_MSG"},
	{ErrUnknownTopicOrPart, "ErrUnknownTopicOrPart", "RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART"},
	{ErrInvalidMsgSize, "ErrInvalidMsgSize", "RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE"},
	{ErrLeaderNotAvailable, "ErrLeaderNotAvailable", "RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE"},
	{ErrNotLeaderForPartition, "ErrNotLeaderForPartition", "RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION"},
	{ErrRequestTimedOut, "ErrRequestTimedOut", "RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT"},
	{ErrBrokerNotAvailable, "ErrBrokerNotAvailable", "RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE"},
	{ErrReplicaNotAvailable, "ErrReplicaNotAvailable", "RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE"},
	{ErrMsgSizeTooLarge, "ErrMsgSizeTooLarge", "RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE"},
	{ErrNetworkException, "ErrNetworkException", "RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION"},
	{ErrTopicException, "ErrTopicException", "RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION"},
	{ErrRecordListTooLarge, "ErrRecordListTooLarge", "RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE"},
	{ErrNotEnoughReplicas, "ErrNotEnoughReplicas", "RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS"},
	{ErrNotEnoughReplicasAfterAppend, "ErrNotEnoughReplicasAfterAppend", "RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND"},
	{ErrInvalidRequiredAcks, "ErrInvalidRequiredAcks", "RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS"},
	{ErrTopicAuthorizationFailed, "ErrTopicAuthorizationFailed", "RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED"},
	{ErrClusterAuthorizationFailed, "ErrClusterAuthorizationFailed", "RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED"},
	{ErrInvalidTimestamp, "ErrInvalidTimestamp", "RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP"},
	{ErrUnsupportedVersion, "ErrUnsupportedVersion", "RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION"},
	{ErrPolicyViolation, "ErrPolicyViolation", "RD_KAFKA_RESP_ERR_POLICY_VIOLATION"},
	{ErrOutOfOrderSequenceNumber, "ErrOutOfOrderSequenceNumber", "RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER"},
	{ErrDuplicateSequenceNumber, "ErrDuplicateSequenceNumber", "RD_KAFKA_RESP_ERR_DUPLICATE_SEQUENCE_NUMBER"},
	{ErrInvalidProducerEpoch, "ErrInvalidProducerEpoch", "RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH"},
	{ErrInvalidProducerIDMapping, "ErrInvalidProducerIDMapping", "RD_KAFKA_RESP_ERR_INVALID_PRODUCER_ID_MAPPING"},
	{ErrTransactionalIDAuthorizationFailed, "ErrTransactionalIDAuthorizationFailed", "RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED"},
	{ErrKafkaStorageError, "ErrKafkaStorageError", "RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR"},
	{ErrSASLAuthenticationFailed, "ErrSASLAuthenticationFailed", "RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED"},
	{ErrUnknownProducerID, "ErrUnknownProducerID", "RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID"},
	{ErrFencedLeaderEpoch, "ErrFencedLeaderEpoch", "RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH"},
	{ErrUnknownLeaderEpoch, "ErrUnknownLeaderEpoch", "RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH"},
	{ErrUnsupportedCompressionType, "ErrUnsupportedCompressionType", "RD_KAFKA_RESP_ERR_UNSUPPORTED_COMPRESSION_TYPE"},
	{ErrInvalidRecord, "ErrInvalidRecord", "RD_KAFKA_RESP_ERR_INVALID_RECORD"},
	{ErrThrottlingQuotaExceeded, "ErrThrottlingQuotaExceeded", "RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED"},
	{ErrProducerFenced, "ErrProducerFenced", "RD_KAFKA_RESP_ERR_PRODUCER_FENCED"},
	{ErrUnknownTopicID, "ErrUnknownTopicID", "RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_ID"},
}

// goConstants returns the names of the constants of type typ declared in
// the package's file.
func goConstants(t *testing.T, file, typ string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); ok && id.Name == typ {
				for _, n := range vs.Names {
					names = append(names, n.Name)
				}
			}
		}
	}
	return names
}

// An upgrade of librdkafka that moves a field the package reads, changes
// a struct's size, renumbers a flag, a tag or an error code, fails here:
// every size, offset and value the package declares, and every ErrorCode,
// PersistStatus and PartitionAny, is compared with what gcc computes from
// the header shipped in the confluent-kafka-go module the build links.
func TestDeclaredLayoutMatchesTheVendoredHeader(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatal("gcc is needed to compile against the vendored header (it also builds cgo)")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Fatal("the go command is needed to find the confluent-kafka-go module")
		}
	}
	out, err := exec.Command(goBin, "list", "-m", "-f", "{{.Dir}}", "github.com/confluentinc/confluent-kafka-go/v2").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	vendor := filepath.Join(strings.TrimSpace(string(out)), "kafka", "librdkafka_vendor")
	if _, err := os.Stat(filepath.Join(vendor, "rdkafka.h")); err != nil {
		t.Fatal(err)
	}

	// Every ErrorCode constant of errors.go must have its enumerator here.
	listed := map[string]bool{}
	for _, e := range errorCodeEnumerators {
		listed[e.goName] = true
	}
	for _, name := range goConstants(t, "errors.go", "ErrorCode") {
		if !listed[name] {
			t.Errorf("ErrorCode constant %s has no enumerator in errorCodeEnumerators", name)
		}
	}

	type check struct {
		what, expr string
		value      int64
	}
	var checks []check
	for _, f := range declaredLayout() {
		checks = append(checks, check{"declared " + f.Expr, f.Expr, f.Value})
	}
	for _, e := range errorCodeEnumerators {
		checks = append(checks, check{e.goName, e.cName, int64(e.code)})
	}
	checks = append(checks,
		check{"NotPersisted", "RD_KAFKA_MSG_STATUS_NOT_PERSISTED", int64(NotPersisted)},
		check{"PossiblyPersisted", "RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED", int64(PossiblyPersisted)},
		check{"Persisted", "RD_KAFKA_MSG_STATUS_PERSISTED", int64(Persisted)},
		check{"PartitionAny", "RD_KAFKA_PARTITION_UA", PartitionAny},
		check{"OffsetBeginning", "RD_KAFKA_OFFSET_BEGINNING", OffsetBeginning},
		check{"OffsetEnd", "RD_KAFKA_OFFSET_END", OffsetEnd},
		check{"OffsetStored", "RD_KAFKA_OFFSET_STORED", OffsetStored},
		check{"OffsetInvalid", "RD_KAFKA_OFFSET_INVALID", OffsetInvalid},
	)

	var src bytes.Buffer
	src.WriteString("#include <stdio.h>\n#include <stddef.h>\n#include \"rdkafka.h\"\n\nint main(void) {\n")
	src.WriteString("\tprintf(\"%x\\n\", RD_KAFKA_VERSION);\n")
	for _, c := range checks {
		fmt.Fprintf(&src, "\tprintf(\"%%lld\\n\", (long long)(%s));\n", c.expr)
	}
	src.WriteString("\treturn 0;\n}\n")
	dir := t.TempDir()
	cfile, bin := filepath.Join(dir, "layout.c"), filepath.Join(dir, "layout")
	if err := os.WriteFile(cfile, src.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-I", vendor, "-o", bin, cfile}
	if out, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc against the vendored header: %v\n%s", err, out)
	}
	res, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("running the layout program: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(res))
	sc.Scan()
	t.Logf("header %s: RD_KAFKA_VERSION 0x%s", filepath.Join(vendor, "rdkafka.h"), sc.Text())
	for i := 0; sc.Scan(); i++ {
		if i >= len(checks) {
			t.Fatal("the layout program printed more lines than there are checks")
		}
		got, err := strconv.ParseInt(sc.Text(), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if c := checks[i]; got != c.value {
			t.Errorf("%s: the header says %s = %d, the package has %d", c.what, c.expr, got, c.value)
		}
		checks[i].expr = "" // seen
	}
	for _, c := range checks {
		if c.expr != "" {
			t.Fatalf("%s: not printed by the layout program", c.what)
		}
	}
}
