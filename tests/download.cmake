# test_download's in-process HTTP server: Debian's cpp-httplib is a compiled library whose
# class layout depends on the feature macros its .pc file defines, so take them from there.
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
target_link_libraries(test_download PRIVATE PkgConfig::HTTPLIB)
