# Install rules: `cmake --install build --prefix P` gives
#   P/bin/deja
#   P/lib/libdeja.so.X.Y.Z (soname libdeja.so.X), libdeja.so, libdeja.a
#   P/include/deja.h, deja_model.h
#   P/lib/pkgconfig/deja.pc                (pkg-config --cflags --libs deja)
#   P/lib/cmake/deja/dejaConfig*.cmake     (find_package(deja) -> deja::deja)
#   P/lib/deja/*.so                        (the example plugins, on deja's default plugin path)
#   P/share/man/man1/deja.1, deja-COMMAND.1
# Every installed file finds the others by relative paths, so the prefix may
# change between configuring and installing.
include(CMakePackageConfigHelpers)

set(DEJA_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/deja)

install(TARGETS deja RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS deja_shared deja_static deja_headers EXPORT dejaTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/deja.h ${PROJECT_SOURCE_DIR}/include/deja_model.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# The CMake package.
install(EXPORT dejaTargets NAMESPACE deja:: DESTINATION ${DEJA_INSTALL_CMAKEDIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/dejaConfig.cmake.in
  ${PROJECT_BINARY_DIR}/dejaConfig.cmake INSTALL_DESTINATION ${DEJA_INSTALL_CMAKEDIR}
  PATH_VARS CMAKE_INSTALL_LIBDIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/dejaConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/dejaConfig.cmake ${PROJECT_BINARY_DIR}/dejaConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/deja_deps.cmake DESTINATION ${DEJA_INSTALL_CMAKEDIR})

# The pkg-config file, relocatable: its prefix is found from its own place.
file(RELATIVE_PATH deja_pc_to_prefix ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" deja_pc_to_prefix "${deja_pc_to_prefix}")
set(deja_pc_prefix "\${pcfiledir}/${deja_pc_to_prefix}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/deja.pc.in ${PROJECT_BINARY_DIR}/deja.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/deja.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
