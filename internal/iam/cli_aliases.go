package iam

import "github.com/azote/azote/internal/api"

// The IAM and STS wire types moved to package api (issue 11). These
// aliases keep internal/cli building until it names them api.X; delete
// this file then. Nothing else may use them.
type (
	InitRequest                   = api.InitRequest
	InitResponse                  = api.InitResponse
	NewVirtualMFADevice           = api.NewVirtualMFADevice
	CreateVirtualMFADeviceRequest = api.CreateVirtualMFADeviceRequest
	EnableMFADeviceRequest        = api.EnableMFADeviceRequest
	Snapshot                      = api.Snapshot
	Change                        = api.Change
	Credentials                   = api.Credentials
	GetSessionTokenRequest        = api.GetSessionTokenRequest
	AssumeRoleRequest             = api.AssumeRoleRequest
	AssumeRoleResponse            = api.AssumeRoleResponse
)

// AdminGroup is api.AdminGroup.
const AdminGroup = api.AdminGroup

// Diff is api.Diff.
func Diff(old, cur api.Snapshot) []api.Change { return api.Diff(old, cur) }
