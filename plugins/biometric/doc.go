// Package biometric is handoff's built-in "biometric" verifier: it hands
// the client's biometric sample (opaque JSON: a typing pattern, a
// face-match reference) to a vendor's or an in-house matching service
// and believes only the service's signed answer.
//
// Both directions are signed per Standard Webhooks (webhook-id,
// webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA256>, with a
// whsec_ secret). Each request carries a fresh random request_id; an
// answer counts only if its signature checks out, its timestamp is within
// the tolerance either way, it echoes this request's id, and its
// webhook-id was not seen before (kept in the host's KV with
// put-if-absent). Verify then requires verified true and a score of at
// least min_score, and returns the service's subject; Enroll registers a
// sample for a user and returns the subject the service enrolled it
// under. README.md documents the protocol, config and errors.
//
// The package imports only providers/sdk (and the Standard Webhooks
// library) and runs out of process like any third-party plugin: the
// daemon re-executes itself as `handoff plugin biometric`, which serves
// New.
package biometric
