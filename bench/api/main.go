// Command api measures azoted's signed network API: in one run it drives
// signed read-only requests (GET /v1/instances, DescribeInstances) over
// HTTPS through the aws-sdk-go-v2 SigV4 signer, every one authorised and
// durably audited before it is answered, and, as the floor of the same
// machine, a bare Go TLS 1.3 server answering the same bytes with no
// authentication and no audit. It prints requests/s and latency
// percentiles for both, then the audit trail's append throughput with
// group commit against one fsync per record.
//
//	go run ./bench/api -bin bin -time 10s -c 64
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/azote/azote/bench/internal/host"
	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/client"
	"github.com/azote/azote/internal/audit"
	"github.com/azote/azote/internal/iam/mfa"
)

func main() {
	bin := flag.String("bin", "bin", "directory with azoted")
	dur := flag.Duration("time", 10*time.Second, "how long each load runs")
	conc := flag.Int("c", 64, "concurrent clients")
	flag.Parse()
	if err := run(*bin, *dur, *conc); err != nil {
		fmt.Fprintln(os.Stderr, "bench/api:", err)
		os.Exit(1)
	}
}

func run(bin string, dur time.Duration, conc int) error {
	az, err := host.Start(bin, "azote-bench-api-", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer az.Stop()
	root, state, sock := az.Root, az.State, az.Socket
	var endpoint string
	for i := 0; i < 300 && endpoint == ""; i++ {
		b, _ := os.ReadFile(filepath.Join(state, "endpoint"))
		endpoint = strings.TrimSpace(string(b))
		time.Sleep(50 * time.Millisecond)
	}
	if endpoint == "" {
		return fmt.Errorf("azoted did not start (log in %s)", az.Log)
	}
	creds, ca, err := setupAccount(sock, state)
	if err != nil {
		return err
	}
	fmt.Printf("host: %d CPUs, %d concurrent clients, %v per load\n\n", runtimeCPUs(), conc, dur)

	// (a) azoted: SigV4 verification, IAM evaluation, durable audit.
	azote := load(endpoint+"/v1/instances", ca, &creds, dur, conc)
	// (b) the floor: TLS 1.3 and HTTP/1.1 in Go, nothing else.
	floorURL, floorCA, stop, err := floorServer()
	if err != nil {
		return err
	}
	floor := load(floorURL, floorCA, nil, dur, conc)
	stop()
	fmt.Println("signed read-only requests over HTTPS (keep-alive, loopback)")
	fmt.Printf("  %-44s %9s %8s %8s %8s %6s\n", "", "req/s", "p50", "p99", "max", "errors")
	azote.print("azoted (SigV4 + IAM + durable audit)")
	floor.print("bare Go TLS 1.3 server (no auth, no audit)")
	fmt.Printf("  azoted / floor: %.2f\n\n", azote.rate()/floor.rate())

	if st, err := auditStats(sock); err == nil {
		fmt.Printf("azoted's trail during the run: %d records, %d fsyncs (%.1f records per fsync, %.2f ms per fsync)\n\n",
			st.Records, st.Fsyncs, float64(st.Records)/float64(max(st.Fsyncs, 1)), float64(st.FsyncTime)/1e6/float64(max(st.Fsyncs, 1)))
	}
	return appendBench(root)
}

type result struct {
	n, errors int64
	elapsed   time.Duration
	lat       []time.Duration
	firstErr  string
}

func (r *result) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

func (r *result) print(name string) {
	sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
	pct := func(p float64) time.Duration {
		if len(r.lat) == 0 {
			return 0
		}
		return r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))]
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/1e6) }
	fmt.Printf("  %-44s %9.0f %8s %8s %8s %6d\n", name, r.rate(), ms(pct(0.50)), ms(pct(0.99)), ms(pct(1)), r.errors)
	if r.firstErr != "" {
		fmt.Printf("    first error: %s\n", r.firstErr)
	}
}

// load runs conc clients against url for dur; with creds every request
// is signed by the AWS SDK's signer with a fresh invocation id.
func load(url string, caPEM []byte, creds *aws.Credentials, dur time.Duration, conc int) *result {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}, MaxIdleConns: conc, MaxIdleConnsPerHost: conc}
	hc := &http.Client{Transport: tr}
	signer := v4.NewSigner()
	res := &result{}
	var mu sync.Mutex
	var seq atomic.Int64
	deadline := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var n, errs int64
			var first string
			for time.Now().Before(deadline) {
				t0 := time.Now()
				req, _ := http.NewRequest("GET", url, nil)
				if creds != nil {
					req.Header.Set("Amz-Sdk-Invocation-Id", strconv.FormatInt(seq.Add(1), 36))
					signer.SignHTTP(context.Background(), *creds, req, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "azote", "local", t0)
				}
				resp, err := hc.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				if err != nil {
					errs++
					if first == "" {
						first = err.Error()
					}
					continue
				}
				n++
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.n += n
			res.errors += errs
			res.lat = append(res.lat, lat...)
			if res.firstErr == "" {
				res.firstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	tr.CloseIdleConnections()
	return res
}

// setupAccount initialises the account over the local socket and makes
// a read-only user with an access key.
func setupAccount(sock, state string) (aws.Credentials, []byte, error) {
	c := client.New(sock)
	ctx := context.Background()
	var begin struct {
		Device api.NewVirtualMFADevice `json:"Device"`
	}
	if err := c.Call(ctx, "iam:InitAccountBegin", nil, &begin); err != nil {
		return aws.Credentials{}, nil, err
	}
	seed, err := mfa.DecodeSecret(begin.Device.Base32StringSeed)
	if err != nil {
		return aws.Credentials{}, nil, err
	}
	n := mfa.Step(time.Now())
	var out struct {
		CACertificate string `json:"CACertificate"`
	}
	if err := c.Call(ctx, "iam:InitAccount", api.InitRequest{RootCode1: mfa.StepCode(seed, n-1), RootCode2: mfa.StepCode(seed, n), AdminUser: "admin"}, &out); err != nil {
		return aws.Credentials{}, nil, err
	}
	if err := c.Call(ctx, "iam:CreateUser", api.UserRequest{UserName: "reader"}, nil); err != nil {
		return aws.Credentials{}, nil, err
	}
	if err := c.Call(ctx, "iam:AttachUserPolicy", api.AttachRequest{UserName: "reader", PolicyArn: "ReadOnlyAccess"}, nil); err != nil {
		return aws.Credentials{}, nil, err
	}
	var key api.NewAccessKey
	if err := c.Call(ctx, "iam:CreateAccessKey", api.UserRequest{UserName: "reader"}, &key); err != nil {
		return aws.Credentials{}, nil, err
	}
	return aws.Credentials{AccessKeyID: key.AccessKeyID, SecretAccessKey: key.SecretAccessKey}, []byte(out.CACertificate), nil
}

func auditStats(sock string) (audit.Stats, error) {
	var out struct {
		Stats audit.Stats `json:"Stats"`
	}
	err := client.New(sock).Call(context.Background(), "audit:GetTrailInfo", nil, &out)
	return out.Stats, err
}

// floorServer is a TLS 1.3 server answering what GET /v1/instances
// answers on an empty host, with a self-signed certificate.
func floorServer() (string, []byte, func(), error) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "floor"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", nil, nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	srv := &http.Server{ErrorLog: log.New(io.Discard, "", 0), TLSConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte("null\n"))
		})}
	go srv.ServeTLS(l, "", "")
	return "https://" + l.Addr().String() + "/v1/instances", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), func() { srv.Close() }, nil
}

// appendBench measures the trail's append throughput with group commit
// (64 concurrent appenders, one fsync per batch) against one fsync per
// record (a single appender: each Append waits for its own fsync).
func appendBench(root string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	fmt.Println("audit append (durable: Append returns after fdatasync)")
	for _, c := range []int{1, 64} {
		dir := filepath.Join(root, "trail-"+strconv.Itoa(c))
		t, err := audit.Open(audit.Config{Dir: dir, AccountID: "123456789012", Region: "local", Signer: key})
		if err != nil {
			return err
		}
		var n atomic.Int64
		deadline := time.Now().Add(3 * time.Second)
		start := time.Now()
		var wg sync.WaitGroup
		for w := 0; w < c; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					r := &audit.Record{EventTime: time.Now(), EventSource: "compute.azote", EventName: "DescribeInstances", SourceIPAddress: "127.0.0.1",
						UserIdentity:      audit.UserIdentity{Type: "IAMUser", ARN: "arn:azote:iam::123456789012:user/reader", AccessKeyID: "AKIAEXAMPLE"},
						RequestParameters: map[string]any{"method": "GET", "path": "/v1/instances"}, ReadOnly: true, EventType: "AwsApiCall", ManagementEvent: true}
					if err := t.Append(context.Background(), r); err != nil {
						return
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		el := time.Since(start)
		st := t.Stats()
		t.Close()
		label := "1 appender (an fsync per record)"
		if c > 1 {
			label = strconv.Itoa(c) + " appenders (group commit)"
		}
		per := 0.0
		if st.Batches > 0 {
			per = float64(st.Records) / float64(st.Batches)
		}
		fmt.Printf("  %-36s %9.0f records/s  %6.1f records per fsync\n", label, float64(n.Load())/el.Seconds(), per)
	}
	return nil
}

func runtimeCPUs() int {
	n := 0
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "processor") {
			n++
		}
	}
	return n
}
