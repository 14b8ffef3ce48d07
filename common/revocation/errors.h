#pragma once
// Error codes (orthrus::Error::code) produced by the revocation modules, common and broker side.
// They are operational codes for logs and orthrusctl; the request-path reasons a device can be
// refused with (client_certificate_revoked, crl_stale, crl_missing, and the proposed
// account_revoked, device_revoked, revocation_feed_stale) live in common/reason.h.


namespace orthrus::revocation::errc {

// An EntryKey that is empty, has the wrong size (SHA-256 not 32 octets), a non-canonical serial,
// control characters in an account/device id, or an issuer the broker does not know.
inline constexpr char kInvalidKey[] = "revocation_invalid_key";
// A request that cannot be served as given (no reason, unknown list kind, unknown administrator).
inline constexpr char kInvalidRequest[] = "revocation_invalid_request";
// Unrevoke of a key that is not revoked.
inline constexpr char kNotFound[] = "revocation_not_found";
// A snapshot/delta that does not fit what the receiver holds (version gap, other feed, CRL diff on
// a different base, malformed packed serials, a missing snapshot part). The receiver keeps its set
// and should reconnect to get a snapshot.
inline constexpr char kProtocol[] = "revocation_protocol_error";
// The edge's state file exists but is truncated, corrupt or of another format.
inline constexpr char kStateCorrupt[] = "revocation_state_corrupt";
// The edge's state file does not exist (first start): not an error for the caller to report loudly.
inline constexpr char kStateMissing[] = "revocation_state_missing";
// Writing the state file failed (disk full, permissions); the previous file is untouched.
inline constexpr char kStateWriteFailed[] = "revocation_state_write_failed";
// SQLite failed (open, schema, I/O); the detail has SQLite's message.
inline constexpr char kDatabase[] = "revocation_db_error";

// CRLs (broker side).
inline constexpr char kCrlInvalid[] = "crl_invalid";            // not a PEM/DER CRL, bad fields
inline constexpr char kCrlBadSignature[] = "crl_bad_signature"; // does not verify with its CA
inline constexpr char kCrlUnknownIssuer[] = "crl_unknown_issuer";  // no CA in crl_ca_file
inline constexpr char kCrlUnsupported[] = "crl_unsupported";    // delta/indirect CRL, unknown critical ext
inline constexpr char kCrlRollback[] = "crl_rollback";          // older than the CRL in force
inline constexpr char kCrlFetchFailed[] = "crl_fetch_failed";   // HTTP/file error, timeout, non-200
inline constexpr char kCrlTooLarge[] = "crl_too_large";         // over http_max_bytes
inline constexpr char kCrlSourceInvalid[] = "crl_source_invalid";  // bad URL (https://, no host)

}  // namespace orthrus::revocation::errc
