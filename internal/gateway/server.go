package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"github.com/azote/azote/internal/api"
	"io"
	"log"
	"net"
	"net/http"
	"time"
)

// recoverer turns a handler panic into InternalError: one bad request must
// not take the controller down.
func (h *handler) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				h.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
				writeError(w, api.Errorf(api.CodeInternal, "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// decode reads a strict JSON body of at most api.MaxBodyBytes into v. An empty
// body is allowed when v has no required fields (the caller validates).
func decode(w http.ResponseWriter, r *http.Request, v any) *api.Error {
	body := http.MaxBytesReader(w, r.Body, api.MaxBodyBytes)
	data, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return api.Errorf(api.CodeRequestTooLarge, "request body exceeds %d bytes", api.MaxBodyBytes)
		}
		return api.Errorf(api.CodeMalformedRequest, "reading body: %v", err)
	}
	if len(data) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return api.Errorf(api.CodeMalformedRequest, "request body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return api.Errorf(api.CodeMalformedRequest, "request body: data after the JSON value")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *api.Error) {
	writeJSON(w, e.Status(), e)
}

// Serve serves h on l until ctx ends; with tlsConfig it serves HTTPS.
// The handler itself authenticates every request (NewHandler). Every
// request gets lim's deadlines; l gets lim's connection bounds when lim
// sets any.
func Serve(ctx context.Context, l net.Listener, h http.Handler, tlsConfig *tls.Config, lim Limits) error {
	var ll *limitListener
	if lim.MaxConns > 0 || lim.MaxConnsPerIP > 0 {
		ll = newLimitListener(l, lim)
		l = ll
	}
	srv := &http.Server{
		Handler:           withDeadlines(h, lim),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		// HTTP/1.1 only, as AWS's own Query and JSON endpoints answer:
		// under bench/kms HTTP/2's framing cost azoted a third more CPU
		// per call than HTTP/1.1 and its clients a quarter more, and its
		// clients start streams before they know the server's stream
		// limit, which the SDKs cannot retry once a body is sent.
		Protocols: http1Only(),
		TLSConfig: tlsConfig,
		ErrorLog:  log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	if ll != nil {
		srv.ConnState = ll.connState
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	var err error
	if tlsConfig != nil {
		err = srv.ServeTLS(l, "", "")
	} else {
		err = srv.Serve(l)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

type connKey struct{}

// http1Only is the protocol set of the API listener: HTTP/1.1 alone (over
// TLS by ALPN, or in the clear on a local socket).
func http1Only() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	return p
}
