package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/engine"
	"github.com/azote/azote/internal/hostinfo"
	"github.com/azote/azote/internal/image"
	"github.com/azote/azote/internal/store"
)

const tableInstances = "instances"

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

func (c *Controller) runtime(id string) *instanceRuntime {
	c.mu.Lock()
	defer c.mu.Unlock()
	rt, ok := c.runtimes[id]
	if !ok {
		rt = &instanceRuntime{id: id, release: make(chan struct{})}
		c.runtimes[id] = rt
	}
	return rt
}

func (c *Controller) dropRuntime(id string) {
	c.mu.Lock()
	delete(c.runtimes, id)
	c.mu.Unlock()
}

func (c *Controller) instanceDir(id string) string {
	return filepath.Join(c.cfg.StateDir, "instances", id)
}

func consolePath(dir string) string { return filepath.Join(dir, "console.log") }

func newID(prefix string) string {
	var b [9]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])[:17]
}

// notifyLocked wakes long polls on id. c.mu must be held.
func (c *Controller) notifyLocked(id string) {
	if ch, ok := c.changed[id]; ok {
		close(ch)
		delete(c.changed, id)
	}
}

func (c *Controller) changeChan(id string) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.changed[id]
	if !ok {
		ch = make(chan struct{})
		c.changed[id] = ch
	}
	return ch
}

// update applies fn to the stored record of id in one transaction and
// bumps its revision.
func (c *Controller) update(id string, fn func(r *instanceRecord) error) (instanceRecord, error) {
	var rec instanceRecord
	err := c.store.Update(func(tx store.Tx) error {
		if err := tx.Get(tableInstances, id, &rec); err != nil {
			return err
		}
		if err := fn(&rec); err != nil {
			return err
		}
		rec.Revision++
		return tx.Put(tableInstances, id, &rec)
	})
	if err == nil {
		c.mu.Lock()
		c.notifyLocked(id)
		c.mu.Unlock()
	}
	return rec, err
}

// wake wakes the long polls on id after a change made outside update.
func (c *Controller) wake(id string) {
	c.mu.Lock()
	c.notifyLocked(id)
	c.mu.Unlock()
}

// deleteRecord removes the record of id and wakes its long polls.
func (c *Controller) deleteRecord(id string) error {
	err := c.store.Update(func(tx store.Tx) error { return tx.Delete(tableInstances, id) })
	c.mu.Lock()
	c.notifyLocked(id)
	c.mu.Unlock()
	return err
}

func (c *Controller) get(id string) (instanceRecord, error) {
	var rec instanceRecord
	err := c.store.View(func(tx store.Tx) error { return tx.Get(tableInstances, id, &rec) })
	if errors.Is(err, store.ErrNotFound) {
		return rec, api.Errorf(api.CodeInstanceNotFound, "no instance %q", id)
	}
	return rec, err
}

func (c *Controller) allInstances() ([]instanceRecord, error) {
	var recs []instanceRecord
	err := c.store.View(func(tx store.Tx) error {
		var err error
		recs, err = store.All[instanceRecord](tx, tableInstances)
		return err
	})
	sort.Slice(recs, func(i, j int) bool { return recs[i].CreatedAt.Before(recs[j].CreatedAt) })
	return recs, err
}

// resolve finds an instance by id or by name. A name names the live
// instance with it, or else the most recent terminated one.
func (c *Controller) resolve(ref string) (instanceRecord, error) {
	if rec, err := c.get(ref); err == nil {
		return rec, nil
	} else if !api.IsCode(err, api.CodeInstanceNotFound) {
		return rec, err
	}
	recs, err := c.allInstances()
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
	return instanceRecord{}, api.Errorf(api.CodeInstanceNotFound, "no instance %q", ref)
}

// lockInstance resolves ref, takes the instance's operation lock and reads
// the record again under it. The caller must call unlock.
func (c *Controller) lockInstance(ref string) (instanceRecord, *instanceRuntime, func(), error) {
	rec, err := c.resolve(ref)
	if err != nil {
		return rec, nil, nil, err
	}
	rt := c.runtime(rec.ID)
	rt.opMu.Lock()
	if rec, err = c.get(rec.ID); err != nil {
		rt.opMu.Unlock()
		return rec, nil, nil, err
	}
	return rec, rt, rt.opMu.Unlock, nil
}

func badState(rec instanceRecord, op string) error {
	return api.Errorf(api.CodeIncorrectInstanceState, "cannot %s instance %s in state %s", op, rec.ID, rec.State)
}

// ListInstances implements api.Backend.
func (c *Controller) ListInstances(context.Context) ([]api.Instance, error) {
	recs, err := c.allInstances()
	out := make([]api.Instance, 0, len(recs))
	for i := range recs {
		out = append(out, recs[i].view())
	}
	return out, err
}

// DescribeInstance implements api.Backend.
func (c *Controller) DescribeInstance(ctx context.Context, ref string, after uint64, wait time.Duration) (api.Instance, error) {
	rec, err := c.resolve(ref)
	if err != nil || wait <= 0 || rec.Revision != after {
		return rec.view(), err
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for rec.Revision == after {
		ch := c.changeChan(rec.ID)
		// Re-read after taking the channel so a change in between is seen.
		if rec, err = c.get(rec.ID); err != nil || rec.Revision != after {
			break
		}
		select {
		case <-ch:
		case <-timer.C:
			return rec.view(), nil
		case <-ctx.Done():
			return rec.view(), nil
		}
		rec, err = c.get(rec.ID)
		if err != nil {
			break
		}
	}
	return rec.view(), err
}

// RunInstance implements api.Backend: validate everything first, then
// create the record, the directory and the machine; on any failure undo
// all three, so nothing half-made remains.
func (c *Controller) RunInstance(ctx context.Context, req api.RunInstanceRequest) (api.Instance, error) {
	if req.Name != "" && (!image.ValidName(req.Name) || looksLikeID(req.Name)) {
		return api.Instance{}, api.Errorf(api.CodeInvalidName, "name %q: %s", req.Name, nameRule)
	}
	if req.VCPUs < 1 || req.VCPUs > c.host.Cores {
		return api.Instance{}, api.Errorf(api.CodeInvalidVCPUCount, "vcpus %d: this host allows 1 to %d", req.VCPUs, c.host.Cores)
	}
	if req.MemoryMiB < api.MinMemoryMiB {
		return api.Instance{}, api.Errorf(api.CodeInvalidMemorySize, "memory %d MiB: the minimum is %d MiB", req.MemoryMiB, api.MinMemoryMiB)
	}
	if req.Image == "" {
		return api.Instance{}, api.Errorf(api.CodeInvalidParameter, "image: an image id or name is required")
	}
	if e := api.ValidateTags(req.Tags); e != nil {
		return api.Instance{}, e
	}
	img, err := c.resolveImage(req.Image)
	if err != nil {
		return api.Instance{}, err
	}
	id := newID("i-")
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
	rt := c.runtime(id)
	rt.opMu.Lock()
	defer rt.opMu.Unlock()

	rec := instanceRecord{Instance: api.Instance{
		ID: id, Name: name, State: api.StatePending, ImageID: img.ID,
		VCPUs: req.VCPUs, MemoryMiB: req.MemoryMiB, TerminationProtection: req.TerminationProtection,
		Engine: c.engine.Name(), Accel: c.engine.Accel(),
		Cmdline: cmdline, CmdlineSHA384: image.SHA384Hex([]byte(cmdline)),
		CreatedAt: time.Now().UTC(), Revision: 1, Tags: req.Tags,
	}}
	err = c.store.Update(func(tx store.Tx) error {
		// Memory is checked inside the transaction so that two concurrent
		// launches cannot both count the same free memory.
		var committed int64
		others, err := store.All[instanceRecord](tx, tableInstances)
		if err != nil {
			return err
		}
		for _, r := range others {
			if r.State != api.StateTerminated && r.Name == name {
				return api.Errorf(api.CodeNameInUse, "an instance named %q exists (%s, %s)", name, r.ID, r.State)
			}
			if r.State == api.StatePending {
				committed += int64(r.MemoryMiB) // launched but not yet touched its memory
			}
		}
		if free := hostinfo.MemAvailableMiB() - committed; int64(req.MemoryMiB) > free {
			return api.Errorf(api.CodeInsufficientMemory, "memory %d MiB: only %d MiB is free on this host", req.MemoryMiB, max(free, 0))
		}
		for i, att := range req.Volumes {
			v, err := c.claimVolumeTx(tx, att.Volume, id, att.ReadOnly)
			if err != nil {
				return err
			}
			rec.Volumes = append(rec.Volumes, api.InstanceVolume{VolumeID: v.ID, ReadOnly: att.ReadOnly, Root: i == 0 && req.RootVolume != ""})
		}
		return tx.Create(tableInstances, id, &rec)
	})
	if err != nil {
		c.dropRuntime(id)
		return api.Instance{}, err
	}
	undo := func() {
		os.RemoveAll(c.instanceDir(id))
		c.store.Update(func(tx store.Tx) error {
			for _, a := range rec.Volumes {
				if _, _, err := c.releaseVolumeTx(tx, a.VolumeID, id); err != nil {
					return err
				}
			}
			return nil
		})
		c.deleteRecord(id)
		c.dropRuntime(id)
	}
	if err := os.Mkdir(c.instanceDir(id), 0o700); err != nil {
		undo()
		return api.Instance{}, fmt.Errorf("instance directory: %w", err)
	}
	rec, err = c.launch(ctx, rt, rec)
	if err != nil {
		undo()
		return api.Instance{}, err
	}
	c.log.Info("instance launched", "id", id, "name", name, "image", img.ID, "vcpus", req.VCPUs, "memory_mib", req.MemoryMiB, "pid", rec.Handle.PID)
	return rec.view(), nil
}

// launch starts the machine of rec and its supervisor, and records the
// handle. rt.opMu must be held.
func (c *Controller) launch(ctx context.Context, rt *instanceRuntime, rec instanceRecord) (instanceRecord, error) {
	img, err := c.resolveImage(rec.ImageID)
	if err != nil {
		return rec, err
	}
	kernel, initrd := c.blobs.Path(img.KernelSHA384), c.blobs.Path(img.InitrdSHA384)
	if !c.blobs.Has(img.KernelSHA384) || !c.blobs.Has(img.InitrdSHA384) {
		return rec, api.Errorf(api.CodeEngineFailure, "image %s: a blob is missing from the store", img.ID)
	}
	spec := c.spec(rec, kernel, initrd)
	// The launch must not be half-done because a client went away.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	// The engine's uid first: the cards' sockets are made for it.
	if spec.UID, err = c.engineIdentity(rt, spec.Dir); err != nil {
		return rec, c.engineFailure(rec.ID, "launch", err)
	}
	// Cards next: the engine connects to their sockets as it starts.
	devices, err := c.startCards(rt, rec)
	if err != nil {
		c.releaseEngineUID(rt)
		c.endEphemeral(rec)
		return rec, err
	}
	spec.Devices = devices
	// Everything the guest prints from here on is this boot's.
	consoleStart := consoleEnd(spec.ConsolePath)
	m, err := c.engine.Launch(lctx, spec)
	if err != nil {
		c.stopCards(rt)
		c.releaseEngineUID(rt)
		c.endEphemeral(rec)
		return rec, c.engineFailure(rec.ID, "launch", err)
	}
	now := time.Now().UTC()
	h := m.Handle()
	rt.mu.Lock()
	set := rt.cards
	rt.mu.Unlock()
	// The cards are recorded with the machine, so that a restarted azoted
	// knows every process this launch started.
	rec, err = c.update(rec.ID, func(r *instanceRecord) error {
		r.State, r.StateReason = api.StatePending, ""
		r.Handle = &h
		if set != nil {
			r.setCards(set)
		}
		r.LaunchedAt, r.BootStartedAt, r.LastResetAt = &now, &now, nil
		r.Ready, r.ReadyAt, r.Agent = false, nil, nil
		r.BootCount++
		r.ConsoleOffset = consoleStart
		return nil
	})
	if err != nil {
		m.Kill()
		<-m.Done()
		c.stopCards(rt)
		c.releaseEngineUID(rt)
		c.endEphemeral(rec)
		return rec, err
	}
	c.startSupervisor(rt, m, rec.ConsoleOffset)
	c.event("LaunchInstance", "instance/"+rec.ID, map[string]any{
		"imageId": img.ID, "kernelSha384": img.KernelSHA384, "initrdSha384": img.InitrdSHA384, "cmdline": rec.Cmdline,
		"engine": c.engine.Name(), "accel": c.engine.Accel(), "vcpus": rec.VCPUs, "memoryMiB": rec.MemoryMiB,
		"volumes": len(rec.Volumes), "bootCount": rec.BootCount,
	})
	return rec, nil
}

// engineIdentity takes a uid for the engine of the launch to come and
// opens the instance directory to it: group uid, mode 0710, so that it can
// reach the cards' sockets (root:uid, 0660) by name and nothing else.
func (c *Controller) engineIdentity(rt *instanceRuntime, dir string) (int, error) {
	uid, err := c.uids.Take()
	if err != nil {
		return 0, err
	}
	err = os.Chown(dir, 0, uid)
	if err == nil {
		err = os.Chmod(dir, 0o710)
	}
	if err != nil {
		c.uids.Release(uid)
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
func (c *Controller) releaseEngineUID(rt *instanceRuntime) {
	rt.mu.Lock()
	uid := rt.engineUID
	rt.engineUID = 0
	rt.mu.Unlock()
	if uid == 0 {
		return
	}
	dir := c.instanceDir(rt.id)
	err := os.Chmod(dir, 0o700)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		if err = os.Chown(dir, 0, 0); err == nil || errors.Is(err, os.ErrNotExist) {
			c.uids.Release(uid)
			return
		}
	}
	// Kept: the id stays held rather than reach this directory.
	c.log.Warn("could not close the instance directory to its engine's uid", "id", rt.id, "err", err)
}

func (c *Controller) spec(rec instanceRecord, kernel, initrd string) engine.Spec {
	dir := c.instanceDir(rec.ID)
	return engine.Spec{
		InstanceID: rec.ID, Dir: dir, Kernel: kernel, Initrd: initrd, Cmdline: rec.Cmdline,
		VCPUs: rec.VCPUs, MemoryMiB: rec.MemoryMiB, ConsolePath: consolePath(dir),
	}
}

// ModifyInstance implements api.Backend.
func (c *Controller) ModifyInstance(_ context.Context, ref string, req api.ModifyInstanceRequest) (api.Instance, error) {
	rec, err := c.resolve(ref)
	if err != nil {
		return api.Instance{}, err
	}
	if req.TerminationProtection == nil {
		return rec.view(), nil
	}
	rec, err = c.update(rec.ID, func(r *instanceRecord) error {
		if r.State == api.StateTerminated {
			return badState(*r, "modify")
		}
		r.TerminationProtection = *req.TerminationProtection
		return nil
	})
	return rec.view(), err
}

// StopInstance implements api.Backend: ask the agent to power off, wait
// up to the stop timeout, then end the machine from the host.
func (c *Controller) StopInstance(ctx context.Context, ref string, req api.StopInstanceRequest) (api.Instance, error) {
	rec, rt, unlock, err := c.lockInstance(ref)
	if err != nil {
		return api.Instance{}, err
	}
	defer unlock()
	rec, err = c.update(rec.ID, func(r *instanceRecord) error {
		if r.State != api.StateRunning && r.State != api.StatePending {
			return badState(*r, "stop")
		}
		r.State, r.StateReason = api.StateStopping, "stop requested"
		return nil
	})
	if err != nil {
		return rec.view(), err
	}
	c.endMachine(ctx, rt, !req.Force && rec.Ready, c.cfg.StopTimeout)
	rec, err = c.get(rec.ID)
	return rec.view(), err
}

// endMachine stops the machine of rt: politely (agent power-off) when
// polite, then by QMP quit, then by SIGKILL. It returns once the
// supervisor has recorded the exit. rt.opMu must be held.
func (c *Controller) endMachine(ctx context.Context, rt *instanceRuntime, polite bool, grace time.Duration) {
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
	c.log.Warn("machine ignored quit; killing", "id", rt.id)
	m.Kill()
	<-exited
}

// StartInstance implements api.Backend.
func (c *Controller) StartInstance(ctx context.Context, ref string) (api.Instance, error) {
	rec, rt, unlock, err := c.lockInstance(ref)
	if err != nil {
		return api.Instance{}, err
	}
	defer unlock()
	if rec.State != api.StateStopped && rec.State != api.StateFailed {
		return rec.view(), badState(rec, "start")
	}
	prev := rec.State
	if rec, err = c.update(rec.ID, func(r *instanceRecord) error {
		r.State, r.StateReason = api.StatePending, "start requested"
		return nil
	}); err != nil {
		return rec.view(), err
	}
	rec, err = c.launch(ctx, rt, rec)
	if err != nil {
		c.update(rec.ID, func(r *instanceRecord) error {
			r.State, r.StateReason = prev, "start failed: "+api.AsError(err).Message
			return nil
		})
		return api.Instance{}, err
	}
	return rec.view(), nil
}

// RebootInstance implements api.Backend: the agent reboots the guest; the
// machine stays up, the boot count grows and ready is reported again.
func (c *Controller) RebootInstance(ctx context.Context, ref string) (api.Instance, error) {
	rec, rt, unlock, err := c.lockInstance(ref)
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
		return rec.view(), c.engineFailure(rec.ID, "reboot", err)
	}
	return rec.view(), nil
}

// TerminateInstance implements api.Backend: end the machine, delete the
// instance's files, and keep the record as terminated.
func (c *Controller) TerminateInstance(ctx context.Context, ref string) (api.Instance, error) {
	rec, rt, unlock, err := c.lockInstance(ref)
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
	if rec, err = c.update(id, func(r *instanceRecord) error {
		if r.TerminationProtection {
			return api.Errorf(api.CodeTerminationProtected,
				"instance %s has termination protection; turn it off with: azote instance modify %s --termination-protection=false", id, id)
		}
		r.State, r.StateReason = api.StateShuttingDown, "terminate requested"
		return nil
	}); err != nil {
		return rec.view(), err
	}
	c.endMachine(ctx, rt, polite, 10*time.Second)
	rec, err = c.finishTerminate(id)
	c.dropRuntime(id)
	return rec.view(), err
}

func (c *Controller) finishTerminate(id string) (instanceRecord, error) {
	if err := os.RemoveAll(c.instanceDir(id)); err != nil {
		return instanceRecord{}, err
	}
	// Persistent volumes are released; instance-store volumes die with the
	// instance: their key is already gone, now their file goes too. They
	// are marked deleted in the same transaction that releases them, so a
	// crash before the purge leaves them to the janitor, never available.
	var purge []string
	err := c.store.Update(func(tx store.Tx) error {
		var r instanceRecord
		if err := tx.Get(tableInstances, id, &r); err != nil {
			return err
		}
		for _, a := range r.Volumes {
			v, released, err := c.releaseVolumeTx(tx, a.VolumeID, id)
			if err != nil {
				return err
			}
			if released && v.Kind == api.VolumeInstanceStore {
				now := time.Now().UTC()
				v.State, v.DeletedAt, v.PurgeAt = api.VolumeDeleted, &now, &now
				if err := tx.Put(tableVolumes, v.ID, &v); err != nil {
					return err
				}
				purge = append(purge, v.ID)
			}
		}
		return nil
	})
	if err != nil {
		return instanceRecord{}, err
	}
	for _, v := range purge {
		if err := c.purgeVolume(v); err != nil {
			c.log.Error("purging instance-store volume", "volume", v, "err", err)
		}
	}
	rec, err := c.update(id, func(r *instanceRecord) error {
		now := time.Now().UTC()
		r.State, r.StateReason = api.StateTerminated, "terminated by user"
		r.Handle, r.Ready, r.TerminatedAt = nil, false, &now
		return nil
	})
	if err == nil {
		c.log.Info("instance terminated", "id", id)
	}
	return rec, err
}

// endEphemeral forgets the keys of rec's instance-store volumes and frees
// their blocks: their data lives only as long as the machine (crypto-erase;
// the next launch starts from zeros under a new key).
func (c *Controller) endEphemeral(rec instanceRecord) {
	for _, a := range rec.Volumes {
		var v volumeRecord
		if c.store.View(func(tx store.Tx) error { return tx.Get(tableVolumes, a.VolumeID, &v) }) != nil || v.Kind != api.VolumeInstanceStore {
			continue
		}
		c.forgetKey(v.ID)
		c.event("CryptoErase", "volume/"+v.ID, map[string]any{"kind": v.Kind, "instanceId": rec.ID, "reason": "instance-store key destroyed and file discarded"})
		if err := discardFile(c.volumeFile(v.ID), v.SizeBytes); err != nil {
			c.log.Warn("discarding an instance-store file", "volume", v.ID, "err", err)
		}
	}
}

// discardFile frees the blocks of the file at path, leaving it size bytes
// long (reading zeros). Punching one hole keeps the size at every moment;
// where the filesystem cannot, it is truncated to zero and back.
func discardFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, size)
	if err == nil {
		return nil
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	return f.Truncate(size)
}

// engineFailure is the answer when the engine fails to op an instance.
// What the engine said (QEMU's command line, paths under the state
// directory, its stderr) is the host's to read: it goes to azoted's log,
// and the caller gets a stable message that points there.
func (c *Controller) engineFailure(id, op string, err error) error {
	c.log.Error("engine failure", "instance", id, "op", op, "err", err)
	return api.Errorf(api.CodeEngineFailure, "the engine could not %s instance %s; azoted's log on the host has the details", op, id)
}
