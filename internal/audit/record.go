package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// EventVersion is the CloudTrail record format version the trail writes.
const EventVersion = "1.08"

// timeLayout is CloudTrail's timestamp format: UTC, whole seconds.
const timeLayout = "2006-01-02T15:04:05Z"

// Record is one CloudTrail event record. The JSON names are CloudTrail's.
//
// EventTime and SessionAttributes.CreationDate are written in UTC at whole
// seconds ("2006-01-02T15:04:05Z"); MarshalJSON and Append normalise them.
type Record struct {
	EventVersion        string         `json:"eventVersion"`
	UserIdentity        UserIdentity   `json:"userIdentity"`
	EventTime           time.Time      `json:"eventTime"`
	EventSource         string         `json:"eventSource"`
	EventName           string         `json:"eventName"`
	AWSRegion           string         `json:"awsRegion"`
	SourceIPAddress     string         `json:"sourceIPAddress"`
	UserAgent           string         `json:"userAgent"`
	ErrorCode           string         `json:"errorCode,omitempty"`
	ErrorMessage        string         `json:"errorMessage,omitempty"`
	RequestParameters   map[string]any `json:"requestParameters,omitempty"`
	ResponseElements    map[string]any `json:"responseElements,omitempty"`
	AdditionalEventData map[string]any `json:"additionalEventData,omitempty"`
	RequestID           string         `json:"requestID"`
	EventID             string         `json:"eventID"`
	ReadOnly            bool           `json:"readOnly"`
	Resources           []Resource     `json:"resources,omitempty"`
	EventType           string         `json:"eventType"`
	ManagementEvent     bool           `json:"managementEvent"`
	RecipientAccountID  string         `json:"recipientAccountId"`
}

// UserIdentity is CloudTrail's userIdentity element: who made the request.
type UserIdentity struct {
	Type           string          `json:"type"`
	PrincipalID    string          `json:"principalId,omitempty"`
	ARN            string          `json:"arn,omitempty"`
	AccountID      string          `json:"accountId,omitempty"`
	AccessKeyID    string          `json:"accessKeyId,omitempty"`
	UserName       string          `json:"userName,omitempty"`
	InvokedBy      string          `json:"invokedBy,omitempty"`
	SessionContext *SessionContext `json:"sessionContext,omitempty"`
}

// SessionContext describes temporary credentials: when they were issued,
// whether MFA was used, and which principal they were issued from.
type SessionContext struct {
	Attributes    SessionAttributes `json:"attributes"`
	SessionIssuer *SessionIssuer    `json:"sessionIssuer,omitempty"`
	// EC2RoleDelivery is "2.0" for an instance's role credentials, which
	// only the metadata service's IMDSv2 delivers (CloudTrail's field);
	// SourceInstanceARN names that instance (azote's addition: CloudTrail
	// leaves it to the session name, which azote also sets to the
	// instance id).
	EC2RoleDelivery   string `json:"ec2RoleDelivery,omitempty"`
	SourceInstanceARN string `json:"sourceInstanceArn,omitempty"`
}

// SessionAttributes mirrors sessionContext.attributes. CloudTrail writes
// mfaAuthenticated as the string "true" or "false", hence ",string".
type SessionAttributes struct {
	CreationDate     time.Time `json:"creationDate"`
	MFAAuthenticated bool      `json:"mfaAuthenticated,string"`
}

// SessionIssuer mirrors sessionContext.sessionIssuer.
type SessionIssuer struct {
	Type        string `json:"type"`
	PrincipalID string `json:"principalId,omitempty"`
	ARN         string `json:"arn,omitempty"`
	AccountID   string `json:"accountId,omitempty"`
	UserName    string `json:"userName,omitempty"`
}

// Resource mirrors one entry of CloudTrail's resources list.
type Resource struct {
	ARN       string `json:"ARN,omitempty"`
	AccountID string `json:"accountId,omitempty"`
	Type      string `json:"type,omitempty"`
}

// plainRecord has Record's fields and none of its methods, so encoding it
// does not recurse into Record.MarshalJSON (and encoding/json does not
// re-scan the output of a MarshalJSON on the hot path).
type plainRecord Record

// normalizeTimes puts the timestamps in CloudTrail's form. time.Time
// marshals as RFC 3339 with trailing zero fractions dropped, so a UTC
// time at whole seconds marshals exactly as timeLayout.
func (r *Record) normalizeTimes() {
	r.EventTime = r.EventTime.UTC().Truncate(time.Second)
	if sc := r.UserIdentity.SessionContext; sc != nil {
		sc.Attributes.CreationDate = sc.Attributes.CreationDate.UTC().Truncate(time.Second)
	}
}

// MarshalJSON writes the record as CloudTrail does, timestamps in UTC at
// whole seconds.
func (r Record) MarshalJSON() ([]byte, error) {
	if sc := r.UserIdentity.SessionContext; sc != nil {
		// Copy so normalising does not write through the caller's pointer.
		c := *sc
		r.UserIdentity.SessionContext = &c
	}
	r.normalizeTimes()
	return json.Marshal((*plainRecord)(&r))
}

// parseRecord decodes one record as the trail stores it. Numbers inside the
// free-form maps stay json.Number so integers beyond 2^53 survive a Lookup.
// Anything that is not a single JSON object carrying an event ID and time
// is rejected: a journal line or log entry without them was not written by
// Append.
func parseRecord(b []byte) (Record, error) {
	var r Record
	b = trimJSONSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return r, fmt.Errorf("%w: record is not a JSON object", ErrCorrupt)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode((*plainRecord)(&r)); err != nil {
		return Record{}, fmt.Errorf("%w: record: %v", ErrCorrupt, err)
	}
	if dec.More() || dec.InputOffset() != int64(len(b)) {
		return Record{}, fmt.Errorf("%w: trailing data after record", ErrCorrupt)
	}
	if r.EventID == "" || r.EventTime.IsZero() {
		return Record{}, fmt.Errorf("%w: record without eventID or eventTime", ErrCorrupt)
	}
	return r, nil
}

// trimJSONSpace trims the four bytes JSON calls whitespace, and no others:
// a line kept by parseJournal is embedded verbatim in a log, so whatever
// is trimmed here must also be legal there.
func trimJSONSpace(b []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// Bounds on what a record keeps of a string its subject chooses. A client
// that is refused before it is authenticated still chooses its user agent,
// its path and the key id it claims; whatever it sends, its record stays
// small.
const (
	// MaxFieldBytes bounds userAgent, sourceIPAddress, the userIdentity
	// strings, requestID and every resource ARN.
	MaxFieldBytes = 1024
	// MaxMessageBytes bounds errorMessage.
	MaxMessageBytes = 2048
	// truncMark ends a string Truncate cut.
	truncMark = "...[truncated]"
)

// Truncate returns s if it is at most n bytes long, else its longest
// prefix that leaves room for a marker, cut at a UTF-8 boundary and
// followed by "...[truncated]". The result is never longer than n (or
// than the marker, for n shorter than it).
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	keep := n - len(truncMark)
	if keep <= 0 {
		return truncMark[:min(n, len(truncMark))]
	}
	// Back off to the first byte of a rune so the result stays UTF-8.
	for keep > 0 && s[keep]&0xc0 == 0x80 {
		keep--
	}
	return s[:keep] + truncMark
}

// bound cuts the record's client-chosen strings to their limits. Resources
// is copied before it is changed: the caller's slice is not written.
func (r *Record) bound() {
	r.UserAgent = Truncate(r.UserAgent, MaxFieldBytes)
	r.SourceIPAddress = Truncate(r.SourceIPAddress, MaxFieldBytes)
	r.ErrorCode = Truncate(r.ErrorCode, MaxFieldBytes)
	r.ErrorMessage = Truncate(r.ErrorMessage, MaxMessageBytes)
	r.RequestID = Truncate(r.RequestID, MaxFieldBytes)
	r.EventName = Truncate(r.EventName, MaxFieldBytes)
	r.EventSource = Truncate(r.EventSource, MaxFieldBytes)
	u := &r.UserIdentity
	for _, p := range []*string{&u.Type, &u.PrincipalID, &u.ARN, &u.AccountID, &u.AccessKeyID, &u.UserName, &u.InvokedBy} {
		*p = Truncate(*p, MaxFieldBytes)
	}
	copied := false
	for i, res := range r.Resources {
		if len(res.ARN) > MaxFieldBytes || len(res.AccountID) > MaxFieldBytes || len(res.Type) > MaxFieldBytes {
			if !copied {
				r.Resources, copied = append([]Resource(nil), r.Resources...), true
			}
			r.Resources[i] = Resource{ARN: Truncate(res.ARN, MaxFieldBytes), AccountID: Truncate(res.AccountID, MaxFieldBytes), Type: Truncate(res.Type, MaxFieldBytes)}
		}
	}
}
