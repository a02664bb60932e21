package api

import "time"

// Credentials are temporary credentials.
type Credentials struct {
	AccessKeyID     string    `json:"AccessKeyId"`
	SecretAccessKey string    `json:"SecretAccessKey"`
	SessionToken    string    `json:"SessionToken"`
	Expiration      time.Time `json:"Expiration"`
}

// GetSessionTokenRequest asks for temporary credentials of the caller.
type GetSessionTokenRequest struct {
	DurationSeconds int64  `json:"DurationSeconds,omitempty"`
	SerialNumber    string `json:"SerialNumber,omitempty"`
	TokenCode       string `json:"TokenCode,omitempty"`
	// Root asks for a session of the account root; only host root on the
	// unix socket may ask, and only with root's MFA code.
	Root bool `json:"Root,omitempty"`
}

// AssumeRoleRequest asks for a role session.
type AssumeRoleRequest struct {
	RoleArn         string `json:"RoleArn"`
	RoleSessionName string `json:"RoleSessionName"`
	DurationSeconds int64  `json:"DurationSeconds,omitempty"`
	SerialNumber    string `json:"SerialNumber,omitempty"`
	TokenCode       string `json:"TokenCode,omitempty"`
}

// AssumeRoleResponse is AssumeRole's answer.
type AssumeRoleResponse struct {
	Credentials     Credentials `json:"Credentials"`
	AssumedRoleUser struct {
		AssumedRoleID string `json:"AssumedRoleId"`
		ARN           string `json:"Arn"`
	} `json:"AssumedRoleUser"`
}
