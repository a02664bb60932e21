package instances

import "github.com/azote/azote/internal/cards/cardproto"

// roleCredentials are the current credentials of the role of rec's
// instance profile, for its metadata service; nil without a profile.
//
// replaced by h/roles at merge
func (s *Service) roleCredentials(rec instanceRecord) (*cardproto.NetRoleCredentials, error) {
	return nil, nil
}
