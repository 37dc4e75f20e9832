# The Debian package (make deb; docs/operations.md): install rules for the
# kt binary, the stdlib, the examples, a systemd unit and /etc/kt, and the
# CPack DEB settings. Included from the top-level CMakeLists.txt; it only
# declares install rules and writes CPackConfig.cmake, so configure stays as
# fast as before. cpack (not the build) runs dpkg-shlibdeps and strip.
set(_pkg ${CMAKE_CURRENT_LIST_DIR})

# /usr/bin/kt. The build tree's RUNPATH (/usr/lib/llvm-19/lib) is dropped on
# install: Debian's libllvm19 puts libLLVM.so.19.1 on the default search path.
install(TARGETS kt RUNTIME DESTINATION bin)
# /usr/share/kt/stdlib: the CLI finds it next to the binary (../share/kt/stdlib),
# so neither --stdlib nor KT_STDLIB is needed once installed.
install(DIRECTORY ${CMAKE_SOURCE_DIR}/stdlib/ DESTINATION share/kt/stdlib
        FILES_MATCHING PATTERN "*.ktp")
install(DIRECTORY ${CMAKE_SOURCE_DIR}/examples/policies/ DESTINATION share/kt/examples/policies
        FILES_MATCHING PATTERN "*.ktp")
install(FILES ${CMAKE_SOURCE_DIR}/docs/operations.md DESTINATION share/doc/kt)
install(FILES ${_pkg}/kt-gateway.service ${_pkg}/kt-gateway@.service
        DESTINATION /lib/systemd/system)
# /etc/kt: the conffiles (dpkg keeps an operator's edits on upgrade).
install(FILES ${CMAKE_SOURCE_DIR}/examples/policies/quickstart.ktp
        DESTINATION /etc/kt/policies)
# 0600 root: it may carry KT_UPSTREAM_API_KEY / KT_ADMIN_TOKEN; systemd reads
# it as root before dropping to the kt user.
install(FILES ${_pkg}/kt-gateway.env DESTINATION /etc/kt
        PERMISSIONS OWNER_READ OWNER_WRITE)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME kt)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "kt")
set(CPACK_PACKAGE_CONTACT "kt maintainers <kt@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "LLM policy gateway: an OpenAI/Anthropic-compatible proxy enforcing .ktp policies")
set(CPACK_PACKAGE_DESCRIPTION
  "kt gateway serves the OpenAI and Anthropic API surfaces, enforcing .ktp\npolicies (input, tool-call and streamed output checks, rate limits) with\na hash-chained audit trail. Includes the kt CLI, the policy stdlib and a\nsystemd unit (kt-gateway.service, not started on install).")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # kt_<version>_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # dpkg-shlibdeps (dpkg-dev)
# Merged with what dpkg-shlibdeps finds: postinst creates the kt user.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${_pkg}/debian/conffiles ${_pkg}/debian/postinst ${_pkg}/debian/prerm ${_pkg}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_OUTPUT_FILE_PREFIX ${CMAKE_BINARY_DIR})
include(CPack)
