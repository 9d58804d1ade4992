# `cmake --install` layout: headers, libraries, and a CMake package so that consumers write
#   find_package(emissions CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE emissions::emissions)   # and emissions::testing
include(CMakePackageConfigHelpers)

install(DIRECTORY include/emissions DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(_emissions_targets emissions)
if(TARGET emissions_testing)
  list(APPEND _emissions_targets emissions_testing)
  install(DIRECTORY testing/include/emissions DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endif()
install(TARGETS ${_emissions_targets} EXPORT emissionsTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT emissionsTargets NAMESPACE emissions::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/emissions)

configure_package_config_file(cmake/emissionsConfig.cmake.in
    ${CMAKE_CURRENT_BINARY_DIR}/emissionsConfig.cmake
    INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/emissions)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/emissionsConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/emissionsConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/emissionsConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/emissions)
