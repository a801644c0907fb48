// Command floor is the cheapest admission webhook that can be registered:
// net/http, crypto/tls and encoding/json, decoding each AdmissionReview and
// allowing it. BenchmarkPodCreates (test/e2e) runs it beside Portreeve,
// registered by the same chart, as the floor that Portreeve's cost per
// request is measured against. It is a benchmark reference, not a product.
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"log"
	"net/http"
)

type review struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		UID    string          `json:"uid"`
		Object json.RawMessage `json:"object"`
	} `json:"request,omitempty"`
	Response *response `json:"response,omitempty"`
}

type response struct {
	UID     string  `json:"uid"`
	Allowed bool    `json:"allowed"`
	Status  *status `json:"status,omitempty"`
}

type status struct {
	Message string `json:"message"`
}

// probeName is the name of the object the floor refuses, so that a test can
// see that the apiserver calls it.
const probeName = "floor-probe"

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	cert := flag.String("cert", "tls.crt", "serving certificate (PEM)")
	key := flag.String("key", "tls.key", "its key (PEM)")
	flag.Parse()
	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Addr:      *addr,
		Handler:   http.HandlerFunc(admit),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
	}
	log.Fatal(srv.ListenAndServeTLS("", ""))
}

// admit decodes the review, object included, and allows it (but the probe).
func admit(w http.ResponseWriter, r *http.Request) {
	var in review
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	var obj map[string]any
	if err := json.Unmarshal(in.Request.Object, &obj); err != nil {
		http.Error(w, "object is not JSON", http.StatusBadRequest)
		return
	}
	out := review{APIVersion: in.APIVersion, Kind: in.Kind, Response: &response{UID: in.Request.UID, Allowed: true}}
	if md, _ := obj["metadata"].(map[string]any); md["name"] == probeName {
		out.Response.Allowed, out.Response.Status = false, &status{Message: "the floor webhook answers"}
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(out); err != nil {
		log.Print(err)
	}
}
