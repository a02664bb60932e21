package gateway

import (
	"github.com/azote/azote/internal/api"
)

// InstanceProfiles resolves the instance profile of a launch (the IAM
// implements it).
type InstanceProfiles interface {
	// InstanceProfileForLaunch resolves a profile name or ARN and checks
	// that an instance can be launched with it; the profile comes back
	// with its role whenever it has one, even with an error, so that the
	// role can be authorised first.
	InstanceProfileForLaunch(ref string) (api.InstanceProfile, error)
}

// runProfileAlso is the further resource of a launch with an instance
// profile: the profile's role, on which the caller needs iam:PassRole
// (runAlsoAction), as EC2 requires. Whoever may launch with a profile
// gets its role's permissions inside the guest, so a caller without
// PassRole on the role could otherwise raise their own permissions to the
// role's. The profile is resolved once, here: the launch is handed the
// profile and role that were authorised (RunInstanceRequest.
// InstanceProfile), never the name to look up again. A profile that does
// not exist, has no role, or whose role does not trust the compute
// service is answered once the call is authorised on everything else.
func (h *handler) runProfileAlso(c *restCall, q *api.RunInstanceRequest) []string {
	q.InstanceProfile = nil
	if q.IAMInstanceProfile == "" {
		return nil
	}
	if h.cfg.Profiles == nil {
		if c.alsoErr == nil {
			c.alsoErr = api.Errorf(api.CodeInvalidParameter, "this azoted has no instance profiles")
		}
		return nil
	}
	p, err := h.cfg.Profiles.InstanceProfileForLaunch(q.IAMInstanceProfile)
	var arns []string
	if len(p.Roles) > 0 {
		arns = append(arns, p.Roles[0].ARN)
	}
	if err != nil {
		if c.alsoErr == nil {
			c.alsoErr = err
		}
		return arns
	}
	q.IAMInstanceProfile, q.InstanceProfile = p.ARN, &p
	return arns
}
