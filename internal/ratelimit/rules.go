// Package ratelimit enforces the limits and topic ACLs that a platform team
// sets centrally for every sidecar: records and bytes per second for
// producers, records per second pushed to subscriptions, and which callers
// may produce to or consume from which topics.
//
// The rules come as one limits Document (a file the gateway watches, or a
// versioned document in Redis that gatewayctl changes); a new document is
// validated as a whole and applied without a restart, and an invalid one
// leaves the last good one in force. Token buckets are golang.org/x/time/rate
// limiters, one per rule and caller identity, kept across reloads (a changed
// rule changes its buckets' rates in place). A rule with scope fleet shares
// one bucket among every replica through Redis (see fleet.go).
package ratelimit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Document is a limits document.
//
//	version: "2026-11-24.1"        # optional label, shown as the version in force
//	rules:
//	  - name: orders-producers      # unique; the metrics label
//	    identity: "checkout"        # caller pattern ("*" wildcards); empty: any
//	    topic: "orders.*"           # topic pattern; empty: any
//	    records: {per_second: 1000, burst: 2000}
//	    bytes: {per_second: 10485760}
//	    deliver: {per_second: 500}  # records/s pushed to each Subscribe stream
//	    action: wait                # wait | reject | shadow
//	    max_wait: 2s                # wait: the longest a call blocks
//	    scope: local                # local | fleet (shared by every replica, via Redis)
//	    allow: [produce, consume]   # topic ACL (see below)
//
// The most specific rule that matches a call's identity and topic applies
// (see Rule.Specificity); a rule with empty identity and topic is the
// default. ACLs are on when any rule has allow: then an operation is
// permitted only if the rule that applies lists it, and a call that no rule
// matches is denied.
//
// Consumer groups have rules of their own, matched the same way on
// (identity, group):
//
//	groups:
//	  - name: checkout-groups
//	    identity: "checkout"
//	    group: "checkout-*"
//	    allow: [subscribe, ack, reset, describe]
//
// Group ACLs are on when topic ACLs are, or when any group rule exists:
// then subscribing to a group, acking or nacking its deliveries, resetting
// its offsets and describing it are permitted only if the group rule that
// applies lists the operation.
type Document struct {
	Version string      `yaml:"version" json:"version,omitempty"`
	Rules   []Rule      `yaml:"rules" json:"rules"`
	Groups  []GroupRule `yaml:"groups" json:"groups,omitempty"`
}

// GroupRule is one consumer-group rule of a Document.
type GroupRule struct {
	Name     string           `yaml:"name" json:"name"`
	Identity string           `yaml:"identity" json:"identity,omitempty"`
	Group    string           `yaml:"group" json:"group,omitempty"`
	Allow    []GroupOperation `yaml:"allow" json:"allow"`
}

// GroupOperation is what a caller does with a consumer group, for ACLs.
type GroupOperation string

// Group operations.
const (
	// Subscribe attaches a stream to the group (starting it here).
	Subscribe GroupOperation = "subscribe"
	// Ack acknowledges or rejects (Nack) the group's deliveries.
	Ack GroupOperation = "ack"
	// Reset moves the group's committed offsets (admin ResetOffsets).
	Reset GroupOperation = "reset"
	// Describe reads the group's members, offsets and lag (admin).
	Describe GroupOperation = "describe"
)

// Specificity ranks a group rule as Rule.Specificity ranks a rule.
func (r GroupRule) Specificity() int {
	return patternSpecificity(r.Identity) + patternSpecificity(r.Group)
}

func (r GroupRule) allows(op GroupOperation) bool {
	return slices.Contains(r.Allow, op)
}

// Rule is one rule of a Document.
type Rule struct {
	Name     string        `yaml:"name" json:"name"`
	Identity string        `yaml:"identity" json:"identity,omitempty"`
	Topic    string        `yaml:"topic" json:"topic,omitempty"`
	Records  *Limit        `yaml:"records" json:"records,omitempty"`
	Bytes    *Limit        `yaml:"bytes" json:"bytes,omitempty"`
	Deliver  *Limit        `yaml:"deliver" json:"deliver,omitempty"`
	Action   Action        `yaml:"action" json:"action,omitempty"`
	MaxWait  time.Duration `yaml:"max_wait" json:"max_wait,omitempty"`
	Scope    Scope         `yaml:"scope" json:"scope,omitempty"`
	Allow    []Operation   `yaml:"allow" json:"allow,omitempty"`
}

// Limit is a token bucket: PerSecond tokens a second, at most Burst saved.
type Limit struct {
	PerSecond float64 `yaml:"per_second" json:"per_second"`
	// Burst is the most a caller may take at once, and what it may save
	// while idle. Zero means one second's worth (at least 1).
	Burst int `yaml:"burst" json:"burst,omitempty"`
}

// burst returns the effective burst.
func (l Limit) burst() int {
	if l.Burst > 0 {
		return l.Burst
	}
	return max(1, int(math.Ceil(l.PerSecond)))
}

// Action is what happens to a call over its limit.
type Action string

// Actions.
const (
	// Wait blocks the call until its tokens are there, if that is within
	// the rule's max_wait and the call's deadline; otherwise the call is
	// rejected.
	Wait Action = "wait"
	// Reject answers RESOURCE_EXHAUSTED at once, with the delay after
	// which the call would pass.
	Reject Action = "reject"
	// Shadow admits the call and counts it as limited: for rolling out a
	// new limit safely.
	Shadow Action = "shadow"
)

// Scope is where a rule's buckets live.
type Scope string

// Scopes.
const (
	// Local buckets are this gateway's own: each replica admits the
	// rule's rate.
	Local Scope = "local"
	// Fleet buckets are shared by every replica through Redis: together
	// they admit the rule's rate.
	Fleet Scope = "fleet"
)

// Operation is what a caller does with a topic, for ACLs.
type Operation string

// Operations.
const (
	Produce Operation = "produce"
	Consume Operation = "consume"
)

// DefaultMaxWait is a wait rule's max_wait when the document gives none.
const DefaultMaxWait = time.Second

// ParseDocument decodes a YAML (or JSON) limits document strictly (unknown
// keys are errors) and validates it. Errors name the offending field, such
// as rules[2].records.per_second.
func ParseDocument(data []byte) (Document, error) {
	var d Document
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&d); err != nil && !errors.Is(err, io.EOF) {
		return Document{}, fmt.Errorf("limits document: %w", err)
	}
	if err := d.Validate(); err != nil {
		return Document{}, err
	}
	return d, nil
}

// Validate checks every rule and reports all problems found, each naming
// its field.
func (d Document) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	names := map[string]int{}
	for i, r := range d.Rules {
		at := fmt.Sprintf("rules[%d]", i)
		switch j, dup := names[r.Name]; {
		case r.Name == "":
			bad(at+".name", "must not be empty (it names the rule in metrics and errors)")
		case dup:
			bad(at+".name", "%q is also the name of rules[%d]", r.Name, j)
		default:
			names[r.Name] = i
		}
		for _, f := range []struct {
			field string
			l     *Limit
		}{{"records", r.Records}, {"bytes", r.Bytes}, {"deliver", r.Deliver}} {
			field, l := f.field, f.l
			switch {
			case l == nil:
			case !(l.PerSecond > 0) || math.IsInf(l.PerSecond, 0):
				bad(at+"."+field+".per_second", "must be a positive number, not %v", l.PerSecond)
			case l.Burst < 0:
				bad(at+"."+field+".burst", "must not be negative")
			}
		}
		switch r.Action {
		case "", Wait, Reject, Shadow:
		default:
			bad(at+".action", "%q is not one of wait, reject, shadow", r.Action)
		}
		if r.MaxWait < 0 {
			bad(at+".max_wait", "must not be negative")
		}
		switch r.Scope {
		case "", Local:
		case Fleet:
			if r.Deliver != nil {
				bad(at+".deliver", "is per Subscribe stream; it cannot have scope fleet")
			}
		default:
			bad(at+".scope", "%q is not one of local, fleet", r.Scope)
		}
		for j, op := range r.Allow {
			if op != Produce && op != Consume {
				bad(fmt.Sprintf("%s.allow[%d]", at, j), "%q is not one of produce, consume", op)
			}
		}
		if r.Records == nil && r.Bytes == nil && r.Deliver == nil && r.Allow == nil {
			bad(at, "sets no limit (records, bytes, deliver) and no allow: it would do nothing")
		}
	}
	groupNames := map[string]int{}
	for i, r := range d.Groups {
		at := fmt.Sprintf("groups[%d]", i)
		switch j, dup := groupNames[r.Name]; {
		case r.Name == "":
			bad(at+".name", "must not be empty (it names the rule in errors)")
		case dup:
			bad(at+".name", "%q is also the name of groups[%d]", r.Name, j)
		default:
			groupNames[r.Name] = i
		}
		for j, op := range r.Allow {
			switch op {
			case Subscribe, Ack, Reset, Describe:
			default:
				bad(fmt.Sprintf("%s.allow[%d]", at, j), "%q is not one of subscribe, ack, reset, describe", op)
			}
		}
	}
	return errors.Join(errs...)
}

// Specificity ranks how narrowly the rule matches: the specificity of its
// identity pattern plus that of its topic pattern, where an exact name
// outranks any pattern with a wildcard, a pattern ranks by its number of
// literal characters, and an empty pattern or "*" ranks 0. Between rules of
// equal specificity, the earlier in the document applies.
func (r Rule) Specificity() int {
	return patternSpecificity(r.Identity) + patternSpecificity(r.Topic)
}

const exactSpecificity = 1 << 16

func patternSpecificity(p string) int {
	if !strings.Contains(p, "*") {
		if p == "" {
			return 0
		}
		return exactSpecificity + len(p)
	}
	return len(p) - strings.Count(p, "*")
}

// match reports whether name matches pattern: '*' matches any run of
// characters (including none); every other character matches itself. An
// empty pattern matches everything.
func match(pattern, name string) bool {
	if pattern == "" {
		return true
	}
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == name
	}
	if !strings.HasPrefix(name, pattern[:star]) {
		return false
	}
	name = name[star:]
	rest := pattern[star+1:]
	for {
		next := strings.IndexByte(rest, '*')
		if next < 0 {
			return strings.HasSuffix(name, rest)
		}
		i := strings.Index(name, rest[:next])
		if i < 0 {
			return false
		}
		name = name[i+next:]
		rest = rest[next+1:]
	}
}

func (r Rule) action() Action {
	if r.Action == "" {
		return Wait
	}
	return r.Action
}

func (r Rule) maxWait() time.Duration {
	if r.MaxWait == 0 {
		return DefaultMaxWait
	}
	return r.MaxWait
}

func (r Rule) allows(op Operation) bool {
	for _, a := range r.Allow {
		if a == op {
			return true
		}
	}
	return false
}
