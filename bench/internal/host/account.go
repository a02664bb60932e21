package host

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/client"
	"github.com/azote/azote/internal/iam/mfa"
)

// InitAccount initialises azoted's account over its local socket, as
// `azote init` does (root's virtual MFA device, an admin user), and
// returns the account CA's certificate (PEM), which the HTTPS listener's
// certificate chains to.
func (a *Azoted) InitAccount(ctx context.Context) ([]byte, error) {
	c := client.New(a.Socket)
	var begin struct {
		Device api.NewVirtualMFADevice `json:"Device"`
	}
	if err := c.Call(ctx, "iam:InitAccountBegin", nil, &begin); err != nil {
		return nil, err
	}
	seed, err := mfa.DecodeSecret(begin.Device.Base32StringSeed)
	if err != nil {
		return nil, err
	}
	n := mfa.Step(time.Now())
	var out struct {
		CACertificate string `json:"CACertificate"`
	}
	if err := c.Call(ctx, "iam:InitAccount", api.InitRequest{RootCode1: mfa.StepCode(seed, n-1), RootCode2: mfa.StepCode(seed, n), AdminUser: "admin"}, &out); err != nil {
		return nil, err
	}
	return []byte(out.CACertificate), nil
}

// User makes an IAM user with the inline policy document policy and
// returns the credentials of a new access key of it.
func (a *Azoted) User(ctx context.Context, name, policy string) (aws.Credentials, error) {
	c := client.New(a.Socket)
	if err := c.Call(ctx, "iam:CreateUser", api.UserRequest{UserName: name}, nil); err != nil {
		return aws.Credentials{}, err
	}
	if err := c.Call(ctx, "iam:PutUserPolicy", api.InlinePolicyRequest{UserName: name, PolicyName: name, PolicyDocument: policy}, nil); err != nil {
		return aws.Credentials{}, err
	}
	var key api.NewAccessKey
	if err := c.Call(ctx, "iam:CreateAccessKey", api.UserRequest{UserName: name}, &key); err != nil {
		return aws.Credentials{}, err
	}
	return aws.Credentials{AccessKeyID: key.AccessKeyID, SecretAccessKey: key.SecretAccessKey}, nil
}
