package controller

import (
	"time"

	"github.com/azote/azote/internal/api"
)

// iamRoles gives the instances owner the IAM's instance role sessions
// (instances.Roles). The IAM is opened after the owners (openAccess), so
// it is reached through the controller, never before the API serves or
// Repair runs.
type iamRoles struct{ c *Controller }

func (r iamRoles) InstanceProfileForLaunch(ref string) (api.InstanceProfile, error) {
	return r.c.iam.InstanceProfileForLaunch(ref)
}

func (r iamRoles) ActivateInstanceCredentials(id string) error {
	return r.c.iam.ActivateInstanceCredentials(id)
}

func (r iamRoles) RevokeInstanceCredentials(id string) error {
	return r.c.iam.RevokeInstanceCredentials(id)
}

func (r iamRoles) InstanceCredentials(profileARN, id string) (api.Credentials, api.Role, api.InstanceProfile, error) {
	return r.c.iam.InstanceCredentials(profileARN, id)
}

// InstanceLifetime is how long the sessions last, for the refresher.
func (r iamRoles) InstanceLifetime() time.Duration { return r.c.iam.InstanceLifetime() }
