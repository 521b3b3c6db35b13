# COPPICE_KERNELS_ONLY: util (without the downloader), kernels and ops, and the tests that check
# every ISA table against the scalar twins. Used for the AArch64 NEON build under qemu-user
# (scripts/test_neon.sh, toolchain cmake/aarch64-linux-gnu.cmake).
coppice_layer(coppice_util util Threads::Threads)
coppice_layer(coppice_kernels kernels coppice_util)
coppice_layer(coppice_ops ops coppice_kernels coppice_util)

if(COPPICE_TESTS)
  enable_testing()
  # GoogleTest from Debian's source package (libgtest-dev ships /usr/src/googletest), compiled
  # with this build's compiler, so a cross build needs no arm64 gtest package.
  set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
  set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
  add_subdirectory(/usr/src/googletest ${CMAKE_BINARY_DIR}/googletest EXCLUDE_FROM_ALL)
  include(GoogleTest)
  foreach(name test_quant test_simd test_kv_float_rows test_kv_attn_kernels)
    add_executable(${name} ${CMAKE_SOURCE_DIR}/tests/${name}.cpp)
    target_compile_options(${name} PRIVATE ${COPPICE_WARN})
    target_link_libraries(${name} PRIVATE coppice_ops gtest gtest_main)
    # One ctest entry per binary (listing the cases would run each binary under the emulator).
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES TIMEOUT 900)
  endforeach()
endif()
