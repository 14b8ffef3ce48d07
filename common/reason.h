#pragma once
// Reason codes: every refusal or failure on the request path carries one. The same code appears in the
// log line, the audit record, the metrics counter and (as a status message) on the gRPC stream.
#include <cstdint>
#include <string_view>

namespace orthrus {

enum class Reason : uint16_t {
  kOk = 0,
  // device -> edge: TLS
  kTlsHandshakeFailed,
  kNoClientCertificate,
  kUntrustedClientCertificate,
  kClientCertificateExpired,
  kClientCertificateNotYetValid,
  kClientCertificateMalformed,
  kClientCertificateRevoked,
  kClientCertificateSelfSigned,
  kClientCertificateWrongPurpose,
  kClientCertificateWeakKey,
  kClientCertificateWeakSignature,
  kClientCertificateChainTooDeep,
  kClientCertificateNameConstraints,
  kClientCertificateUnknownCriticalExtension,
  kClientCertificateTooLarge,
  kClientCertificateRestricted,
  kCrlStale,
  kCrlMissing,
  // device -> edge: publishing rules and passwords
  kNoPublishingRule,
  kMisdirectedRequest,
  kPasswordRequired,
  kMalformedCredentials,
  kRateLimited,
  // device -> edge: HTTP
  kMalformedRequest,
  kRequestLineTooLong,
  kHeaderTooLarge,
  kBodyTooLarge,
  kHeaderTimeout,
  kBodyTimeout,
  kUnsupportedRequest,
  kClientClosed,
  // edge -> broker
  kBrokerUnavailable,
  kBrokerTimeout,
  kBrokerRefusedEdge,
  kBrokerProtocolError,
  // broker checks
  kEdgeNotAllowed,
  kBadRequestHead,
  kIdentityUntrusted,
  kIdentityMismatch,
  kNoRoute,
  kAuthenticationIncomplete,
  // password -> account (Kerberos AS exchange)
  kPasswordWrong,
  kPasswordUnknownUser,
  kPasswordExpired,
  kIdentitiesDiffer,
  // broker -> backend
  kBackendConnectFailed,
  kBackendTlsFailed,
  kBackendTimeout,
  kBackendReset,
  kBackendBadResponse,
  // certificate -> account (LDAP)
  kAccountNotFound,
  kAccountAmbiguous,
  kAccountDisabled,
  kAccountLocked,
  kAccountNotDelegable,
  kDirectoryUnavailable,
  // Kerberos constrained delegation
  kDelegationNotAllowed,
  kSpnUnknown,
  kKdcUnreachable,
  kClockSkew,
  kKerberosWeakCrypto,
  kKerberosError,
  kBackendRejectedTicket,
  kBackendAuthFailed,
  kBrokerOverloaded,
  kCancelled,
  kInternalError,
  // pushed revocation (issue 5): instant revocations, the edge's feed, the broker's admin channel
  kAccountRevoked,
  kDeviceRevoked,
  kRevocationFeedStale,
  kAdminNotAllowed,
  kCount_,  // keep last
};

std::string_view ReasonName(Reason reason);
// HTTP status a device sees when this reason ends a request before a response head was sent.
unsigned ReasonHttpStatus(Reason reason);
// Plain-language hint for the operator, logged next to the code.
std::string_view ReasonHint(Reason reason);
// Inverse of ReasonName; kInternalError for unknown names (a newer broker may send codes we lack).
Reason ReasonFromName(std::string_view name);

}  // namespace orthrus
