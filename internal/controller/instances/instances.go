package instances

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/controller/volumes"
	"github.com/azote/azote/internal/controller/vpcs"
	"github.com/azote/azote/internal/engine"
	"github.com/azote/azote/internal/hostinfo"
	"github.com/azote/azote/internal/image"
	"github.com/azote/azote/internal/store"
)

// instanceRecord is what the store keeps of an instance: the public view
// and what azoted needs to re-adopt it.
type instanceRecord struct {
	api.Instance
	Handle        *engine.Handle `json:"handle,omitempty"`
	BootStartedAt *time.Time     `json:"boot_started_at,omitempty"`
	// ConsoleOffset is where the supervisor resumes parsing the console
	// after a restart: report lines before it were already handled.
	ConsoleOffset int64 `json:"console_offset"`
	// LastResetAt is the engine's time of the last guest reset counted
	// as a boot.
	LastResetAt *time.Time `json:"last_reset_at,omitempty"`
	// Cards are the card processes serving the volumes, by volume id.
	Cards map[string]cardHandle `json:"cards,omitempty"`
	// InstanceProfileID is the unique id of the instance profile
	// (IAMInstanceProfile) the launch was authorised with: a profile
	// made again under the same name is not it (roles.go).
	InstanceProfileID string `json:"instance_profile_id,omitempty"`
	// PublicKey is the key pair's public key as of the launch (EC2 keeps
	// it when the pair is deleted); UserData the launch's user data.
	// Neither is part of the public view: the metadata service serves
	// them, and GetUserData returns the user data to who may read it.
	PublicKey string `json:"public_key,omitempty"`
	UserData  []byte `json:"user_data,omitempty"`
}

func (r *instanceRecord) view() api.Instance {
	v := r.Instance
	if r.Handle != nil {
		v.PID = r.Handle.PID
	}
	return v
}

// instanceRuntime is the live side of an instance with a machine.
type instanceRuntime struct {
	id string
	// opMu serialises lifecycle operations (run, stop, start, reboot,
	// terminate) on this instance.
	opMu sync.Mutex

	mu      sync.Mutex
	machine engine.Machine
	exited  chan struct{} // closed once the supervisor recorded the exit
	cards   *cardSet
	// engineUID is the uid (and gid) of the current engine, which may
	// connect to the cards' sockets; 0 for none or an engine running as
	// root (started before uids were given).
	engineUID int

	release     chan struct{}
	releaseOnce sync.Once
}

func (rt *instanceRuntime) current() (engine.Machine, chan struct{}) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.machine, rt.exited
}

func (s *Service) runtime(id string) *instanceRuntime {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.runtimes[id]
	if !ok {
		rt = &instanceRuntime{id: id, release: make(chan struct{})}
		s.runtimes[id] = rt
	}
	return rt
}

func (s *Service) dropRuntime(id string) {
	s.mu.Lock()
	delete(s.runtimes, id)
	s.mu.Unlock()
}

func consolePath(dir string) string { return filepath.Join(dir, "console.log") }

// notifyLocked wakes long polls on id. s.mu must be held.
func (s *Service) notifyLocked(id string) {
	if ch, ok := s.changed[id]; ok {
		close(ch)
		delete(s.changed, id)
	}
}

func (s *Service) changeChan(id string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.changed[id]
	if !ok {
		ch = make(chan struct{})
		s.changed[id] = ch
	}
	return ch
}

// update applies fn to the stored record of id in one transaction and
// bumps its revision.
func (s *Service) update(id string, fn func(r *instanceRecord) error) (instanceRecord, error) {
	var rec instanceRecord
	err := s.store.Update(func(tx store.Tx) error {
		if err := tx.Get(Table, id, &rec); err != nil {
			return err
		}
		if err := fn(&rec); err != nil {
			return err
		}
		rec.Revision++
		return tx.Put(Table, id, &rec)
	})
	if err == nil {
		s.mu.Lock()
		s.notifyLocked(id)
		s.mu.Unlock()
	}
	return rec, err
}

// wake wakes the long polls on id after a change made outside update.
func (s *Service) wake(id string) {
	s.mu.Lock()
	s.notifyLocked(id)
	s.mu.Unlock()
}

// deleteRecord removes the record of id and wakes its long polls.
func (s *Service) deleteRecord(id string) error {
	err := s.store.Update(func(tx store.Tx) error { return tx.Delete(Table, id) })
	s.mu.Lock()
	s.notifyLocked(id)
	s.mu.Unlock()
	return err
}

func (s *Service) get(id string) (instanceRecord, error) {
	var rec instanceRecord
	err := s.store.View(func(tx store.Tx) error { return tx.Get(Table, id, &rec) })
	if errors.Is(err, store.ErrNotFound) {
		return rec, refusal.New(ErrNotFound, "no instance %q", id)
	}
	return rec, err
}

func (s *Service) allInstances() ([]instanceRecord, error) {
	var recs []instanceRecord
	err := s.store.View(func(tx store.Tx) error {
		var err error
		recs, err = store.All[instanceRecord](tx, Table)
		return err
	})
	sort.Slice(recs, func(i, j int) bool { return recs[i].CreatedAt.Before(recs[j].CreatedAt) })
	return recs, err
}

// resolve finds an instance by id or by name. A name names the live
// instance with it, or else the most recent terminated one.
func (s *Service) resolve(ref string) (instanceRecord, error) {
	if rec, err := s.get(ref); err == nil {
		return rec, nil
	} else if !errors.Is(err, ErrNotFound) {
		return rec, err
	}
	recs, err := s.allInstances()
	if err != nil {
		return instanceRecord{}, err
	}
	var found *instanceRecord
	for i := range recs {
		r := &recs[i]
		if r.Name != ref {
			continue
		}
		if r.State != api.StateTerminated {
			return *r, nil
		}
		found = r
	}
	if found != nil {
		return *found, nil
	}
	return instanceRecord{}, refusal.New(ErrNotFound, "no instance %q", ref)
}

// Resolve finds an instance by id or by name (a live one, or else the
// most recent terminated one).
func (s *Service) Resolve(ref string) (api.Instance, error) {
	rec, err := s.resolve(ref)
	return rec.view(), err
}

// lockInstance resolves ref, takes the instance's operation lock and reads
// the record again under it. The caller must call unlock.
func (s *Service) lockInstance(ref string) (instanceRecord, *instanceRuntime, func(), error) {
	rec, err := s.resolve(ref)
	if err != nil {
		return rec, nil, nil, err
	}
	rt := s.runtime(rec.ID)
	rt.opMu.Lock()
	if rec, err = s.get(rec.ID); err != nil {
		rt.opMu.Unlock()
		return rec, nil, nil, err
	}
	return rec, rt, rt.opMu.Unlock, nil
}

func badState(rec instanceRecord, op string) error {
	return refusal.New(ErrIncorrectState, "cannot %s instance %s in state %s", op, rec.ID, rec.State)
}

// List.
func (s *Service) List(context.Context) ([]api.Instance, error) {
	recs, err := s.allInstances()
	out := make([]api.Instance, 0, len(recs))
	for i := range recs {
		out = append(out, recs[i].view())
	}
	return out, err
}

// Describe.
func (s *Service) Describe(ctx context.Context, ref string, after uint64, wait time.Duration) (api.Instance, error) {
	rec, err := s.resolve(ref)
	if err != nil || wait <= 0 || rec.Revision != after {
		return rec.view(), err
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for rec.Revision == after {
		ch := s.changeChan(rec.ID)
		// Re-read after taking the channel so a change in between is seen.
		if rec, err = s.get(rec.ID); err != nil || rec.Revision != after {
			break
		}
		select {
		case <-ch:
		case <-timer.C:
			return rec.view(), nil
		case <-ctx.Done():
			return rec.view(), nil
		}
		rec, err = s.get(rec.ID)
		if err != nil {
			break
		}
	}
	return rec.view(), err
}

// Run: validate everything first, then
// create the record, the directory and the machine; on any failure undo
// all three, so nothing half-made remains.
func (s *Service) Run(ctx context.Context, req api.RunInstanceRequest) (api.Instance, error) {
	if req.Name != "" && !api.ValidName(req.Name) {
		return api.Instance{}, refusal.New(refusal.ErrInvalidName, "name %q: %s", req.Name, api.NameRule)
	}
	if req.VCPUs < 1 || req.VCPUs > s.host.Cores {
		return api.Instance{}, refusal.New(ErrInvalidVCPUs, "vcpus %d: this host allows 1 to %d", req.VCPUs, s.host.Cores)
	}
	if req.MemoryMiB < api.MinMemoryMiB {
		return api.Instance{}, refusal.New(ErrInvalidMemory, "memory %d MiB: the minimum is %d MiB", req.MemoryMiB, api.MinMemoryMiB)
	}
	if req.Image == "" {
		return api.Instance{}, refusal.New(refusal.ErrInvalidParameter, "image: an image id or name is required")
	}
	if e := api.ValidateTags(req.Tags); e != nil {
		return api.Instance{}, e
	}
	if req.Subnet == "" && (len(req.SecurityGroups) > 0 || req.PrivateIP != "") {
		return api.Instance{}, refusal.New(refusal.ErrInvalidParameter, "security groups and a private IP are those of the primary network interface: give its subnet too")
	}
	if req.Subnet != "" && s.vpcs == nil {
		return api.Instance{}, refusal.New(refusal.ErrInvalidParameter, "this azoted has no network")
	}
	guest, err := s.guestInputs(req)
	if err != nil {
		return api.Instance{}, err
	}
	img, err := s.images.Resolve(req.Image)
	if err != nil {
		return api.Instance{}, err
	}
	profile, err := s.checkLaunchProfile(req)
	if err != nil {
		return api.Instance{}, err
	}
	id := api.NewID(api.InstanceIDPrefix)
	name := req.Name
	if name == "" {
		name = id
	}
	cmdline := img.Cmdline + " azote.instance=" + id
	if req.RootVolume != "" {
		// The root volume is /dev/vda; the agent mounts it and switches
		// to it as /.
		req.Volumes = append([]api.VolumeAttachment{{Volume: req.RootVolume}}, req.Volumes...)
		cmdline += " azote.root=/dev/vda"
	}
	rt := s.runtime(id)
	rt.opMu.Lock()
	defer rt.opMu.Unlock()

	rec := instanceRecord{Instance: api.Instance{
		ID: id, Name: name, State: api.StatePending, ImageID: img.ID,
		VCPUs: req.VCPUs, MemoryMiB: req.MemoryMiB, TerminationProtection: req.TerminationProtection,
		Engine: s.engine.Name(), Accel: s.engine.Accel(),
		Cmdline: cmdline, CmdlineSHA384: image.SHA384Hex([]byte(cmdline)),
		CreatedAt: time.Now().UTC(), Revision: 1, Tags: req.Tags,
	}}
	if profile != nil {
		rec.IAMInstanceProfile, rec.InstanceProfileID = profile.ARN, profile.InstanceProfileID
	}
	guest.apply(&rec)
	if req.Subnet != "" {
		// The primary interface is made first, in the network's store
		// (which may be the fleet's, not this host's: the two cannot
		// change in one transaction); a refused subnet, group or address
		// leaves no instance, and a refused launch ends the interface
		// again. What a crash leaves in between, SweepInterfaces ends.
		n, err := s.vpcs.CreateAttached(api.CreateNetworkInterfaceRequest{
			Subnet: req.Subnet, SecurityGroups: req.SecurityGroups, PrivateIP: req.PrivateIP,
		}, api.NetworkInterfaceAttachment{InstanceID: id, DeviceIndex: 0, DeleteOnTermination: true})
		if err != nil {
			s.dropRuntime(id)
			return api.Instance{}, err
		}
		rec.setInterfaces([]vpcs.InterfaceRecord{n})
	}
	err = s.store.Update(func(tx store.Tx) error {
		// Memory is checked inside the transaction so that two concurrent
		// launches cannot both count the same free memory.
		var committed int64
		others, err := store.All[instanceRecord](tx, Table)
		if err != nil {
			return err
		}
		for _, r := range others {
			if r.State != api.StateTerminated && r.Name == name {
				return refusal.New(refusal.ErrNameInUse, "an instance named %q exists (%s, %s)", name, r.ID, r.State)
			}
			if r.State == api.StatePending {
				committed += int64(r.MemoryMiB) // launched but not yet touched its memory
			}
		}
		if free := hostinfo.MemAvailableMiB() - committed; int64(req.MemoryMiB) > free {
			return refusal.New(ErrInsufficientMemory, "memory %d MiB: only %d MiB is free on this host", req.MemoryMiB, max(free, 0))
		}
		for i, att := range req.Volumes {
			v, err := volumes.ClaimTx(tx, att.Volume, id, att.ReadOnly)
			if err != nil {
				return err
			}
			rec.Volumes = append(rec.Volumes, api.InstanceVolume{VolumeID: v.ID, ReadOnly: att.ReadOnly, Root: i == 0 && req.RootVolume != ""})
		}
		return tx.Create(Table, id, &rec)
	})
	if err != nil {
		s.endInterfaces(id)
		s.dropRuntime(id)
		return api.Instance{}, err
	}
	undo := func() {
		os.RemoveAll(s.instanceDir(id))
		s.store.Update(func(tx store.Tx) error {
			for _, a := range rec.Volumes {
				if _, _, err := volumes.ReleaseTx(tx, a.VolumeID, id); err != nil {
					return err
				}
			}
			return nil
		})
		s.endInterfaces(id)
		s.deleteRecord(id)
		s.dropRuntime(id)
	}
	if err := os.Mkdir(s.instanceDir(id), 0o700); err != nil {
		undo()
		return api.Instance{}, fmt.Errorf("instance directory: %w", err)
	}
	rec, err = s.launch(ctx, rt, rec)
	if err != nil {
		undo()
		return api.Instance{}, err
	}
	s.log.Info("instance launched", "id", id, "name", name, "image", img.ID, "vcpus", req.VCPUs, "memory_mib", req.MemoryMiB, "pid", rec.Handle.PID)
	return rec.view(), nil
}

// launch starts the machine of rec and its supervisor, and records the
// handle. rt.opMu must be held.
func (s *Service) launch(ctx context.Context, rt *instanceRuntime, rec instanceRecord) (instanceRecord, error) {
	img, kernel, initrd, err := s.images.Boot(rec.ImageID)
	if err != nil {
		return rec, err
	}
	// The cards serve the interfaces the network's store has attached.
	if rec, err = s.syncInterfaces(rec); err != nil {
		return rec, err
	}
	spec := s.spec(rec, kernel, initrd)
	// The launch must not be half-done because a client went away.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	// The engine's uid first: the cards' sockets are made for it.
	if spec.UID, err = s.engineIdentity(rt, spec.Dir); err != nil {
		return rec, s.engineFailure(rec.ID, "launch", err)
	}
	// A new generation of role sessions, before the cards that are given
	// the first one as they start (roles.go).
	if err := s.roleStart(rec); err != nil {
		s.releaseEngineUID(rt)
		return rec, err
	}
	// Cards next: the engine connects to their sockets as it starts.
	devices, err := s.startCards(rt, rec)
	if err != nil {
		s.roleEnd(rec.ID)
		s.releaseEngineUID(rt)
		s.endEphemeral(rec)
		return rec, err
	}
	spec.Devices = devices
	// Everything the guest prints from here on is this boot's.
	consoleStart := consoleEnd(spec.ConsolePath)
	m, err := s.engine.Launch(lctx, spec)
	if err != nil {
		s.roleEnd(rec.ID)
		s.stopCards(rt)
		s.releaseEngineUID(rt)
		s.endEphemeral(rec)
		return rec, s.engineFailure(rec.ID, "launch", err)
	}
	now := time.Now().UTC()
	h := m.Handle()
	rt.mu.Lock()
	set := rt.cards
	rt.mu.Unlock()
	// The cards are recorded with the machine, so that a restarted azoted
	// knows every process this launch started.
	rec, err = s.update(rec.ID, func(r *instanceRecord) error {
		r.State, r.StateReason = api.StatePending, ""
		r.Handle = &h
		if set != nil {
			r.setCards(set)
		}
		r.LaunchedAt, r.BootStartedAt, r.LastResetAt = &now, &now, nil
		r.Ready, r.ReadyAt, r.Agent = false, nil, nil
		r.SSHHostKeys = nil // the new boot reports its own
		r.BootCount++
		r.ConsoleOffset = consoleStart
		return nil
	})
	if err != nil {
		s.roleEnd(rec.ID)
		m.Kill()
		<-m.Done()
		s.stopCards(rt)
		s.releaseEngineUID(rt)
		s.endEphemeral(rec)
		return rec, err
	}
	s.startSupervisor(rt, m, rec.ConsoleOffset)
	s.roleRefresh(rec.ID)
	s.event("LaunchInstance", "instance/"+rec.ID, map[string]any{
		"imageId": img.ID, "kernelSha384": img.KernelSHA384, "initrdSha384": img.InitrdSHA384, "cmdline": rec.Cmdline,
		"engine": s.engine.Name(), "accel": s.engine.Accel(), "vcpus": rec.VCPUs, "memoryMiB": rec.MemoryMiB,
		"volumes": len(rec.Volumes), "bootCount": rec.BootCount,
		"keyName": rec.KeyName, "userDataSha256": rec.UserDataSHA256,
	})
	// The cards started before the launch was recorded: their metadata
	// gets this launch's pending time now.
	s.pushMetadata(rt)
	return rec, nil
}

// engineIdentity takes a uid for the engine of the launch to come and
// opens the instance directory to it: group uid, mode 0710, so that it can
// reach the cards' sockets (root:uid, 0660) by name and nothing else.
func (s *Service) engineIdentity(rt *instanceRuntime, dir string) (int, error) {
	uid, err := s.uids.Take()
	if err != nil {
		return 0, err
	}
	err = os.Chown(dir, 0, uid)
	if err == nil {
		err = os.Chmod(dir, 0o710)
	}
	if err != nil {
		s.uids.Release(uid)
		return 0, fmt.Errorf("instance directory: %w", err)
	}
	rt.mu.Lock()
	rt.engineUID = uid
	rt.mu.Unlock()
	return uid, nil
}

// releaseEngineUID gives back the uid of an engine that is gone, after
// closing the instance directory to it again: whoever gets the uid next
// must find nothing of this instance open to it.
func (s *Service) releaseEngineUID(rt *instanceRuntime) {
	rt.mu.Lock()
	uid := rt.engineUID
	rt.engineUID = 0
	rt.mu.Unlock()
	if uid == 0 {
		return
	}
	dir := s.instanceDir(rt.id)
	err := os.Chmod(dir, 0o700)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		if err = os.Chown(dir, 0, 0); err == nil || errors.Is(err, os.ErrNotExist) {
			s.uids.Release(uid)
			return
		}
	}
	// Kept: the id stays held rather than reach this directory.
	s.log.Warn("could not close the instance directory to its engine's uid", "id", rt.id, "err", err)
}

func (s *Service) spec(rec instanceRecord, kernel, initrd string) engine.Spec {
	dir := s.instanceDir(rec.ID)
	return engine.Spec{
		InstanceID: rec.ID, Dir: dir, Kernel: kernel, Initrd: initrd, Cmdline: rec.Cmdline,
		VCPUs: rec.VCPUs, MemoryMiB: rec.MemoryMiB, ConsolePath: consolePath(dir),
	}
}

// Modify.
func (s *Service) Modify(_ context.Context, ref string, req api.ModifyInstanceRequest) (api.Instance, error) {
	rec, err := s.resolve(ref)
	if err != nil {
		return api.Instance{}, err
	}
	if req.TerminationProtection == nil {
		return rec.view(), nil
	}
	rec, err = s.update(rec.ID, func(r *instanceRecord) error {
		if r.State == api.StateTerminated {
			return badState(*r, "modify")
		}
		r.TerminationProtection = *req.TerminationProtection
		return nil
	})
	return rec.view(), err
}

// Stop: ask the agent to power off, wait
// up to the stop timeout, then end the machine from the host.
func (s *Service) Stop(ctx context.Context, ref string, req api.StopInstanceRequest) (api.Instance, error) {
	rec, rt, unlock, err := s.lockInstance(ref)
	if err != nil {
		return api.Instance{}, err
	}
	defer unlock()
	rec, err = s.update(rec.ID, func(r *instanceRecord) error {
		if r.State != api.StateRunning && r.State != api.StatePending {
			return badState(*r, "stop")
		}
		r.State, r.StateReason = api.StateStopping, "stop requested"
		return nil
	})
	if err != nil {
		return rec.view(), err
	}
	s.endMachine(ctx, rt, !req.Force && rec.Ready, s.cfg.StopTimeout)
	rec, err = s.get(rec.ID)
	return rec.view(), err
}

// endMachine stops the machine of rt: politely (agent power-off) when
// polite, then by QMP quit, then by SIGKILL. It returns once the
// supervisor has recorded the exit. rt.opMu must be held.
func (s *Service) endMachine(ctx context.Context, rt *instanceRuntime, polite bool, grace time.Duration) {
	m, exited := rt.current()
	if m == nil {
		return
	}
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-exited:
			return true
		case <-t.C:
			return false
		}
	}
	bg := context.WithoutCancel(ctx)
	if polite {
		if err := m.Command(bg, "stop"); err == nil && wait(grace) {
			return
		}
	}
	qctx, cancel := context.WithTimeout(bg, 5*time.Second)
	m.Quit(qctx)
	cancel()
	if wait(5 * time.Second) {
		return
	}
	s.log.Warn("machine ignored quit; killing", "id", rt.id)
	m.Kill()
	<-exited
}

// Start.
func (s *Service) Start(ctx context.Context, ref string) (api.Instance, error) {
	rec, rt, unlock, err := s.lockInstance(ref)
	if err != nil {
		return api.Instance{}, err
	}
	defer unlock()
	if rec.State != api.StateStopped && rec.State != api.StateFailed {
		return rec.view(), badState(rec, "start")
	}
	prev := rec.State
	if rec, err = s.update(rec.ID, func(r *instanceRecord) error {
		r.State, r.StateReason = api.StatePending, "start requested"
		return nil
	}); err != nil {
		return rec.view(), err
	}
	rec, err = s.launch(ctx, rt, rec)
	if err != nil {
		s.update(rec.ID, func(r *instanceRecord) error {
			r.State, r.StateReason = prev, "start failed: "+err.Error()
			return nil
		})
		return api.Instance{}, err
	}
	return rec.view(), nil
}

// Reboot: the agent reboots the guest; the
// machine stays up, the boot count grows and ready is reported again.
func (s *Service) Reboot(ctx context.Context, ref string) (api.Instance, error) {
	rec, rt, unlock, err := s.lockInstance(ref)
	if err != nil {
		return api.Instance{}, err
	}
	defer unlock()
	if rec.State != api.StateRunning || !rec.Ready {
		return rec.view(), badState(rec, "reboot")
	}
	m, _ := rt.current()
	if m == nil {
		return rec.view(), badState(rec, "reboot")
	}
	if err := m.Command(context.WithoutCancel(ctx), "reboot"); err != nil {
		return rec.view(), s.engineFailure(rec.ID, "reboot", err)
	}
	return rec.view(), nil
}

// Terminate: end the machine, delete the
// instance's files, and keep the record as terminated.
func (s *Service) Terminate(ctx context.Context, ref string) (api.Instance, error) {
	rec, rt, unlock, err := s.lockInstance(ref)
	if err != nil {
		return api.Instance{}, err
	}
	defer unlock()
	if rec.State == api.StateTerminated {
		return rec.view(), nil
	}
	id := rec.ID
	polite := rec.Ready && rec.State == api.StateRunning
	// Protection is checked in the same transaction that commits to the
	// termination, so a concurrent modify cannot slip in between.
	if rec, err = s.update(id, func(r *instanceRecord) error {
		if r.TerminationProtection {
			return refusal.New(ErrTerminationProtected,
				"instance %s has termination protection; turn it off with: azote instance modify %s --termination-protection=false", id, id)
		}
		r.State, r.StateReason = api.StateShuttingDown, "terminate requested"
		return nil
	}); err != nil {
		return rec.view(), err
	}
	s.endMachine(ctx, rt, polite, 10*time.Second)
	rec, err = s.finishTerminate(id)
	s.dropRuntime(id)
	return rec.view(), err
}

func (s *Service) finishTerminate(id string) (instanceRecord, error) {
	s.roleEnd(id)
	if err := os.RemoveAll(s.instanceDir(id)); err != nil {
		return instanceRecord{}, err
	}
	// Persistent volumes are released; instance-store volumes die with the
	// instance: their key is already gone, now their file goes too. They
	// are marked deleted in the same transaction that releases them, so a
	// crash before the purge leaves them to the janitor, never available.
	// The primary interface goes with the instance; any other is
	// detached. In the network's store, first: when it cannot be reached
	// the termination goes on, and SweepInterfaces ends them once it can.
	s.endInterfaces(id)
	var purge []string
	err := s.store.Update(func(tx store.Tx) error {
		var r instanceRecord
		if err := tx.Get(Table, id, &r); err != nil {
			return err
		}
		for _, a := range r.Volumes {
			erase, err := volumes.EndTx(tx, a.VolumeID, id)
			if err != nil {
				return err
			}
			if erase {
				purge = append(purge, a.VolumeID)
			}
		}
		r.Volumes = nil
		r.setInterfaces(nil)
		r.Revision++
		return tx.Put(Table, id, &r)
	})
	if err != nil {
		return instanceRecord{}, err
	}
	for _, v := range purge {
		if err := s.volumes.Purge(v); err != nil {
			s.log.Error("purging instance-store volume", "volume", v, "err", err)
		}
	}
	rec, err := s.update(id, func(r *instanceRecord) error {
		now := time.Now().UTC()
		r.State, r.StateReason = api.StateTerminated, "terminated by user"
		r.Handle, r.Ready, r.TerminatedAt = nil, false, &now
		return nil
	})
	if err == nil {
		s.log.Info("instance terminated", "id", id)
	}
	return rec, err
}

// endEphemeral ends the data of rec's instance-store volumes with their
// machine (volumes.Service.Erase).
func (s *Service) endEphemeral(rec instanceRecord) {
	for _, a := range rec.Volumes {
		s.volumes.Erase(a.VolumeID, rec.ID)
	}
}

// engineFailure is the answer when the engine fails to op an instance.
// What the engine said (QEMU's command line, paths under the state
// directory, its stderr) is the host's to read: it goes to azoted's log,
// and the caller gets a stable message that points there.
func (s *Service) engineFailure(id, op string, err error) error {
	s.log.Error("engine failure", "instance", id, "op", op, "err", err)
	return refusal.New(ErrEngine, "the engine could not %s instance %s; azoted's log on the host has the details", op, id)
}
