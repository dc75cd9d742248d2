// Package invalid describes bad input: which field of a request is wrong and
// why. Domain packages return *Error; the gRPC adapter turns it into
// INVALID_ARGUMENT with a google.rpc.BadRequest detail.
package invalid

import (
	"fmt"
	"strings"
)

// maxViolations bounds how many problems one Error collects, so a request
// with a million bad records costs a bounded answer.
const maxViolations = 100

// Violation is one problem with one field.
type Violation struct {
	// Field is the path of the field in the request, for example
	// "records[3].headers[0].key".
	Field string
	// Description says what is wrong, for example "must not be empty".
	Description string
}

// Error lists the problems found in a request. Its zero value is ready to use.
type Error struct {
	Violations []Violation
	// Omitted counts violations beyond the ones kept.
	Omitted int
}

// Field returns an Error with one violation.
func Field(field, format string, args ...any) *Error {
	e := &Error{}
	e.Add(field, format, args...)
	return e
}

// Add records a violation.
func (e *Error) Add(field, format string, args ...any) {
	if len(e.Violations) >= maxViolations {
		e.Omitted++
		return
	}
	e.Violations = append(e.Violations, Violation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// Err returns e when it holds a violation and nil otherwise.
func (e *Error) Err() error {
	if e == nil || len(e.Violations) == 0 {
		return nil
	}
	return e
}

// Error names the first violation and counts the rest.
func (e *Error) Error() string {
	if len(e.Violations) == 0 {
		return "invalid argument"
	}
	var b strings.Builder
	v := e.Violations[0]
	b.WriteString(v.Field)
	b.WriteString(": ")
	b.WriteString(v.Description)
	if more := len(e.Violations) - 1 + e.Omitted; more > 0 {
		fmt.Fprintf(&b, " (and %d more)", more)
	}
	return b.String()
}
