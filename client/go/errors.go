package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sentinels for the status codes of docs/api.md. An [*APIError] matches the one
// of its status code under [errors.Is].
var (
	// ErrBadRequest: 400, a field or name failed the apiserver's checks.
	ErrBadRequest = errors.New("client: bad request")
	// ErrUnauthorized: 401, the key is missing or unknown.
	ErrUnauthorized = errors.New("client: unauthorized")
	// ErrForbidden: 403, the tenant may not use this namespace or holder.
	ErrForbidden = errors.New("client: forbidden")
	// ErrNotFound: 404, no such lease (or one of another tenant).
	ErrNotFound = errors.New("client: not found")
	// ErrConflict: 409, [Client.Release] of a lease that another holder or
	// fencing token holds.
	ErrConflict = errors.New("client: lease conflict")
)

// APIError is a non-success answer of the apiserver.
type APIError struct {
	// StatusCode is the HTTP status, e.g. 403.
	StatusCode int
	// Message is the "error" field of the body, e.g. "not authorized for
	// this namespace", or the plain body when it is not JSON.
	Message string
	// RequestID is the X-Request-Id of the answer, for the apiserver's log.
	RequestID string
	// RetryAfter is the answer's Retry-After in seconds, or zero. An
	// overloaded apiserver answers 503 "overloaded, retry later" with
	// Retry-After: 1; a [Keeper] waits that long before its next renew
	// when the wait ends before its deadline.
	RetryAfter time.Duration
}

// Error reads "client: <status> <text>: <message>".
func (e *APIError) Error() string {
	msg := fmt.Sprintf("client: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.RequestID != "" && e.StatusCode >= 500 {
		msg += " (request id " + e.RequestID + ")"
	}
	return msg
}

// Is reports whether target is the sentinel of e's status code.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrBadRequest:
		return e.StatusCode == http.StatusBadRequest
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	}
	return false
}

// newAPIError reads the error body of resp: `{"error": "..."}`, or plain
// text for the routes that answer text.
func newAPIError(resp *http.Response) *APIError {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &APIError{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id")}
	// Delay-seconds only; the HTTP-date form is ignored.
	if s, err := strconv.ParseUint(strings.TrimSpace(resp.Header.Get("Retry-After")), 10, 31); err == nil {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	var body struct {
		Error     string `json:"error"`
		RequestID string `json:"requestId"`
	}
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		e.Message = body.Error
		if e.RequestID == "" {
			e.RequestID = body.RequestID
		}
	} else {
		e.Message = strings.TrimSpace(string(raw))
	}
	return e
}
