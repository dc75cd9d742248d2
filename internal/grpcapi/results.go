package grpcapi

import (
	"fmt"
	"log/slog"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/kafkagate/gateway/internal/produce"
)

// resultsFrame is a ProduceStreamResponse sent as it is: the codec writes
// its wire form straight from the producer's results, without building a
// RecordResult and a Timestamp message per record first. It encodes what
// toProtoResults would build, byte for byte. A stream keeps one and reuses
// it: the codec reads the results while the frame is sent, so they may be
// dropped once SendMsg returns, not before.
type resultsFrame struct {
	requestID string
	results   []produce.Result
	errs      [][]byte // the encoded google.rpc.Status of each failed result; nil for the others
	sizes     []int    // each result's encoded length, from SizeVT
}

// Field numbers of the messages written here (proto/gateway/v1).
const (
	fRespRequestID = 1 // ProduceStreamResponse.request_id
	fRespResults   = 2 // ProduceStreamResponse.results

	fResultPartition = 1
	fResultOffset    = 2
	fResultTimestamp = 3
	fResultMessageID = 4
	fResultError     = 5
)

// set makes f the response to requestID with results, encoding the status
// of each failed result as toStatus does.
func (f *resultsFrame) set(logger *slog.Logger, requestID string, results []produce.Result) error {
	f.requestID, f.results = requestID, results
	clear(f.errs)
	f.errs = f.errs[:0]
	for i := range results {
		if results[i].Err == nil {
			continue
		}
		if len(f.errs) == 0 {
			f.errs = append(f.errs, make([][]byte, len(results))...)
		}
		b, err := proto.Marshal(toStatus(logger, results[i].Err).Proto())
		if err != nil {
			return fmt.Errorf("grpcapi: result %d's status: %w", i, err)
		}
		f.errs[i] = b
	}
	return nil
}

// errOf is the encoded status of result i, nil when it succeeded.
func (f *resultsFrame) errOf(i int) []byte {
	if len(f.errs) == 0 {
		return nil
	}
	return f.errs[i]
}

// SizeVT returns the response's encoded length, keeping each result's.
func (f *resultsFrame) SizeVT() int {
	f.sizes = f.sizes[:0]
	n := 0
	if f.requestID != "" {
		n += 1 + protowire.SizeBytes(len(f.requestID))
	}
	for i := range f.results {
		s := resultSize(&f.results[i], f.errOf(i))
		f.sizes = append(f.sizes, s)
		n += 1 + protowire.SizeBytes(s)
	}
	return n
}

// MarshalToSizedBufferVT writes the response into buf, which is exactly
// SizeVT() long (SizeVT is called first, as the codec does).
func (f *resultsFrame) MarshalToSizedBufferVT(buf []byte) (int, error) {
	if len(f.sizes) != len(f.results) {
		return 0, fmt.Errorf("grpcapi: results frame marshalled without its size")
	}
	b := buf[:0]
	if f.requestID != "" {
		b = protowire.AppendTag(b, fRespRequestID, protowire.BytesType)
		b = protowire.AppendString(b, f.requestID)
	}
	for i := range f.results {
		b = protowire.AppendTag(b, fRespResults, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(f.sizes[i]))
		b = appendResult(b, &f.results[i], f.errOf(i))
	}
	if len(b) != len(buf) || (len(b) > 0 && &b[0] != &buf[0]) {
		return 0, fmt.Errorf("grpcapi: results frame is %d bytes, sized %d", len(b), len(buf))
	}
	return len(b), nil
}

// resultSize is the encoded length of a RecordResult's fields: a failed
// result carries its message ID and error, a written one its partition
// and offset (zero values left out, as proto3 does), its timestamp and
// message ID.
func resultSize(r *produce.Result, status []byte) int {
	n := 0
	if r.MessageID != "" {
		n += 1 + protowire.SizeBytes(len(r.MessageID))
	}
	if r.Err != nil {
		return n + 1 + protowire.SizeBytes(len(status))
	}
	if r.Partition != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(r.Partition)))
	}
	if r.Offset != 0 {
		n += 1 + protowire.SizeVarint(uint64(r.Offset))
	}
	return n + 1 + protowire.SizeBytes(timestampSize(r.Timestamp))
}

func appendResult(b []byte, r *produce.Result, status []byte) []byte {
	if r.Err == nil {
		if r.Partition != 0 {
			b = protowire.AppendTag(b, fResultPartition, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(int64(r.Partition)))
		}
		if r.Offset != 0 {
			b = protowire.AppendTag(b, fResultOffset, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(r.Offset))
		}
		b = appendTimestamp(b, fResultTimestamp, r.Timestamp)
	}
	if r.MessageID != "" {
		b = protowire.AppendTag(b, fResultMessageID, protowire.BytesType)
		b = protowire.AppendString(b, r.MessageID)
	}
	if r.Err != nil {
		b = protowire.AppendTag(b, fResultError, protowire.BytesType)
		b = protowire.AppendBytes(b, status)
	}
	return b
}
