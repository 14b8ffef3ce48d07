# Orthrus throwaway AD test domain (Samba AD DC + Kerberos-protected "Exchange" stand-in in a private netns).
# include() this from the top-level CMakeLists.txt after enable_testing():
#
#   include(tests/domain/domain.cmake)
#
# It defines three ctest tests, all labelled "domain" (exclude them with `ctest -LE domain` when not root):
#   domain_up     FIXTURES_SETUP    test_domain   brings the domain up (ROOT=${CMAKE_BINARY_DIR}/test-domain)
#   domain_smoke  FIXTURES_REQUIRED test_domain   end-to-end checks of the domain itself
#   domain_down   FIXTURES_CLEANUP  test_domain   stops everything, deletes the netns
# and the helper
#   orthrus_use_test_domain(<test> [<test>...])
# which makes existing tests require the fixture, adds the "domain" label, takes RESOURCE_LOCK test_domain
# and sets ORTHRUS_TD_ROOT / ORTHRUS_TD_NS / ORTHRUS_TD_ENV / KRB5_CONFIG in their environment.
# A test then runs its processes with:  . "$ORTHRUS_TD_ENV"; ip netns exec "$NS" <cmd>
# The tests need root (netns, ports < 1024); everything stays on 127.0.0.0/8 inside the netns.

set(ORTHRUS_TD_DIR "${CMAKE_CURRENT_LIST_DIR}")
set(ORTHRUS_TD_ROOT "${CMAKE_BINARY_DIR}/test-domain")
# netns name unique per build directory (parallel build trees get parallel, independent domains)
string(SHA1 _orthrus_td_hash "${CMAKE_BINARY_DIR}")
string(SUBSTRING "${_orthrus_td_hash}" 0 10 _orthrus_td_hash)
set(ORTHRUS_TD_NS "orthrus-td-${_orthrus_td_hash}")
set(ORTHRUS_TD_SNAPSHOT "${CMAKE_BINARY_DIR}/test-domain-snapshot.tgz" CACHE STRING
    "Cache tarball of the provisioned test domain (re-keyed automatically; empty = always provision from scratch)")

set(_orthrus_td_env
    "ROOT=${ORTHRUS_TD_ROOT}"
    "NS=${ORTHRUS_TD_NS}"
    "SNAPSHOT=${ORTHRUS_TD_SNAPSHOT}")

add_test(NAME domain_up
         COMMAND ${CMAKE_COMMAND} -E env ${_orthrus_td_env} /bin/bash "${ORTHRUS_TD_DIR}/domain-up.sh")
add_test(NAME domain_smoke
         COMMAND /bin/bash "${ORTHRUS_TD_DIR}/smoke.sh" "${ORTHRUS_TD_ROOT}")
add_test(NAME domain_down
         COMMAND ${CMAKE_COMMAND} -E env ${_orthrus_td_env} /bin/bash "${ORTHRUS_TD_DIR}/domain-down.sh")

set_tests_properties(domain_up PROPERTIES
    FIXTURES_SETUP test_domain
    RESOURCE_LOCK test_domain
    LABELS domain
    TIMEOUT 300)
set_tests_properties(domain_smoke PROPERTIES
    FIXTURES_REQUIRED test_domain
    RESOURCE_LOCK test_domain
    LABELS domain
    TIMEOUT 120)
set_tests_properties(domain_down PROPERTIES
    FIXTURES_CLEANUP test_domain
    RESOURCE_LOCK test_domain
    LABELS domain
    TIMEOUT 60)

# orthrus_use_test_domain(<test>...): make tests run inside the test domain fixture.
# RESOURCE_LOCK test_domain serialises them: the domain is shared state (kdc-control.sh changes the KDC's
# reachability for everybody, kdc-requests.sh counts requests from everybody).
function(orthrus_use_test_domain)
  foreach(_t IN LISTS ARGN)
    set_property(TEST ${_t} APPEND PROPERTY FIXTURES_REQUIRED test_domain)
    set_property(TEST ${_t} APPEND PROPERTY RESOURCE_LOCK test_domain)
    set_property(TEST ${_t} APPEND PROPERTY LABELS domain)
    set_property(TEST ${_t} APPEND PROPERTY ENVIRONMENT
        "ORTHRUS_TD_ROOT=${ORTHRUS_TD_ROOT}"
        "ORTHRUS_TD_NS=${ORTHRUS_TD_NS}"
        "ORTHRUS_TD_ENV=${ORTHRUS_TD_ROOT}/env.sh"
        "ORTHRUS_TD_TOOLS=${ORTHRUS_TD_DIR}"
        "KRB5_CONFIG=${ORTHRUS_TD_ROOT}/krb5.conf")
  endforeach()
endfunction()
