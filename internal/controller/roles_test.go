package controller

import (
	"context"
	"encoding/pem"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/client"
	"github.com/azote/azote/internal/api/sigv4"
	"github.com/azote/azote/internal/audit"
	"github.com/azote/azote/internal/gateway"
	"github.com/azote/azote/internal/iam"
)

// network serves fx's controller API over TLS, every request signed.
func (fx *fixture) network() func(creds sigv4.Credentials) *client.Client {
	srv := httptest.NewTLSServer(gateway.NewHandler(fx.c.apiConfig(true)))
	fx.t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	// A signature's date has whole seconds, and one from before azoted
	// started is refused (its replay cache is new): wait for the next
	// second.
	time.Sleep(time.Until(fx.c.started.Truncate(time.Second).Add(time.Second)))
	return func(creds sigv4.Credentials) *client.Client {
		c, err := client.NewNetwork(srv.URL, ca, creds, fx.c.cfg.Region)
		if err != nil {
			fx.t.Fatal(err)
		}
		return c
	}
}

// TestInstanceRoleThroughAPI: a user may launch with an instance profile
// only with iam:PassRole on its role (the refusal is audited as such and
// leaves nothing); the session minted for the instance signs calls to
// the API as the role's assumed-role session named after the instance,
// which the trail shows with the instance; after terminate it is refused.
func TestInstanceRoleThroughAPI(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	svc := fx.c.iam
	role, err := svc.CreateRole("app", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "compute.azote"}, "Action": "sts:AssumeRole"}]}`, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.PutInlinePolicy(iam.KindRole, "app", "whoami", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]}`); err != nil {
		t.Fatal(err)
	}
	profile, err := svc.CreateInstanceProfile("web")
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.AddRoleToInstanceProfile("web", "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateUser("dev"); err != nil {
		t.Fatal(err)
	}
	key, err := svc.CreateAccessKey("dev")
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.PutInlinePolicy(iam.KindUser, "dev", "launch", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "compute:*", "Resource": "*"}]}`); err != nil {
		t.Fatal(err)
	}
	connect := fx.network()
	dev := connect(sigv4.Credentials{AccessKeyID: key.AccessKeyID, SecretAccessKey: key.SecretAccessKey})
	run := api.RunInstanceRequest{Name: "app", Image: "default", VCPUs: 1, MemoryMiB: 64, IAMInstanceProfile: "web"}

	// No iam:PassRole: refused, audited with the PassRole denial.
	_, err = dev.RunInstance(ctx, run)
	if !api.IsCode(err, api.CodeAccessDenied) || !strings.Contains(err.Error(), "iam:PassRole") {
		t.Fatalf("launch without PassRole: %v", err)
	}
	if l, _ := fx.c.ListInstances(ctx); len(l) != 0 {
		t.Fatalf("a refused launch left %d instances", len(l))
	}
	recs, err := fx.c.trail.Lookup(audit.Filter{EventName: "RunInstances", ErrorCode: string(api.CodeAccessDenied)})
	if err != nil || len(recs) != 1 {
		t.Fatalf("audit records of the refusal: %d (%v)", len(recs), err)
	}
	hasRole := false
	for _, r := range recs[0].Resources {
		hasRole = hasRole || r.ARN == role.ARN
	}
	if !hasRole || !strings.Contains(recs[0].ErrorMessage, "iam:PassRole on "+role.ARN) {
		t.Fatalf("the refusal's record: resources %+v, message %q", recs[0].Resources, recs[0].ErrorMessage)
	}

	// A role that does not trust the compute service is refused too,
	// once PassRole is allowed.
	if err := svc.PutInlinePolicy(iam.KindUser, "dev", "pass", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "`+role.ARN+`"}]}`); err != nil {
		t.Fatal(err)
	}
	if err := svc.UpdateAssumeRolePolicy("app", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "audit.azote"}, "Action": "sts:AssumeRole"}]}`); err != nil {
		t.Fatal(err)
	}
	if _, err = dev.RunInstance(ctx, run); !api.IsCode(err, api.CodeInvalidParameter) {
		t.Fatalf("launch with a role that does not trust compute: %v", err)
	}
	if err := svc.UpdateAssumeRolePolicy("app", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "compute.azote"}, "Action": "sts:AssumeRole"}]}`); err != nil {
		t.Fatal(err)
	}
	if _, err = dev.RunInstance(ctx, api.RunInstanceRequest{Name: "x", Image: "default", VCPUs: 1, MemoryMiB: 64, IAMInstanceProfile: "nope"}); !api.IsCode(err, api.CodeNoSuchEntity) {
		t.Fatalf("launch with no such profile: %v", err)
	}

	inst, err := dev.RunInstance(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	if inst.IAMInstanceProfile != profile.ARN {
		t.Fatalf("instance profile %q, want %q", inst.IAMInstanceProfile, profile.ARN)
	}
	fx.waitState(inst.ID, api.StateRunning)

	cr, _, _, err := svc.InstanceCredentials(inst.IAMInstanceProfile, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	guest := connect(sigv4.Credentials{AccessKeyID: cr.AccessKeyID, SecretAccessKey: cr.SecretAccessKey, SessionToken: cr.SessionToken})
	var who map[string]any
	if err := guest.Call(ctx, "sts:GetCallerIdentity", nil, &who); err != nil {
		t.Fatal(err)
	}
	wantARN := "arn:azote:sts::" + svc.AccountID() + ":assumed-role/app/" + inst.ID
	if who["Arn"] != wantARN || who["UserId"] != role.RoleID+":"+inst.ID {
		t.Fatalf("GetCallerIdentity = %v, want %s", who, wantARN)
	}
	recs, err = fx.c.trail.Lookup(audit.Filter{EventName: "GetCallerIdentity", Principal: wantARN})
	if err != nil || len(recs) != 1 {
		t.Fatalf("audit records of the guest's call: %d (%v)", len(recs), err)
	}
	id := recs[0].UserIdentity
	if id.Type != api.PrincipalAssumedRole || id.SessionContext == nil || id.SessionContext.SessionIssuer == nil ||
		id.SessionContext.SessionIssuer.ARN != role.ARN || id.SessionContext.EC2RoleDelivery != "2.0" ||
		id.SessionContext.SourceInstanceARN != "arn:azote:compute::"+svc.AccountID()+":instance/"+inst.ID {
		t.Fatalf("userIdentity of the guest's call: %+v (session %+v)", id, id.SessionContext)
	}

	if _, err := dev.InstanceAction(ctx, inst.ID, "terminate", nil); err != nil {
		t.Fatal(err)
	}
	if err := guest.Call(ctx, "sts:GetCallerIdentity", nil, &who); !api.IsCode(err, api.CodeExpiredToken) {
		t.Fatalf("the terminated instance's session: %v, want ExpiredToken", err)
	}
}
