# `cmake --install` layout: headers, libraries, a CMake package and a pkg-config file.
#
#   find_package(emissions CONFIG REQUIRED)                      # the library only
#   find_package(emissions CONFIG REQUIRED COMPONENTS testing)   # and the test helpers
#   find_package(emissions CONFIG REQUIRED COMPONENTS kafka)     # and the Kafka adapter
#   target_link_libraries(app PRIVATE emissions::emissions)
#   target_link_libraries(app_tests PRIVATE emissions::testing GTest::gtest_main)
#
#   g++ -std=c++20 app.cpp $(pkg-config --cflags --libs emissions)
#
# The core (emissions::emissions) is in emissionsTargets.cmake and needs nlohmann_json and
# Threads. Each optional part is a package component with its own targets file and its own
# dependencies, loaded only when a consumer asks for it (see emissionsConfig.cmake.in), so
# that plain find_package(emissions) never looks for GoogleTest or librdkafka.
include(CMakePackageConfigHelpers)

set(EMISSIONS_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/emissions)

# Every component the project knows, whether or not this build installs it: asking for
# one that is listed but was not installed says so; asking for any other says it does not
# exist. The optional integrations are in integrations/ (see EmissionsIntegration.cmake).
set(EMISSIONS_KNOWN_COMPONENTS testing kafka webhooks postgres http)

# emissions_install_component(<name> TARGETS <target>... [INCLUDE_DIR <dir>]
#                             [COMPONENT_FILE <file>])
#
# Installs the targets of component <name> in their own export set, as
# emissions<Name>Targets.cmake, with COMPONENT_FILE (default cmake/components/<name>.cmake;
# it finds the component's dependencies, then includes that file) as
# emissions-component-<name>.cmake. The public headers under INCLUDE_DIR go to the common
# include directory.
function(emissions_install_component name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "INCLUDE_DIR;COMPONENT_FILE" "TARGETS")
  if(NOT arg_COMPONENT_FILE)
    set(arg_COMPONENT_FILE ${PROJECT_SOURCE_DIR}/cmake/components/${name}.cmake)
  endif()
  if(NOT name IN_LIST EMISSIONS_KNOWN_COMPONENTS)
    message(FATAL_ERROR "emissions_install_component: add '${name}' to EMISSIONS_KNOWN_COMPONENTS")
  endif()
  string(SUBSTRING "${name}" 0 1 first)
  string(SUBSTRING "${name}" 1 -1 rest)
  string(TOUPPER "${first}" first)
  set(export_set emissions${first}${rest}Targets)

  if(arg_INCLUDE_DIR)
    install(DIRECTORY ${arg_INCLUDE_DIR}/emissions DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  endif()
  install(TARGETS ${arg_TARGETS} EXPORT ${export_set}
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
          INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT ${export_set} NAMESPACE emissions:: DESTINATION ${EMISSIONS_INSTALL_CMAKEDIR})
  install(FILES ${arg_COMPONENT_FILE}
          DESTINATION ${EMISSIONS_INSTALL_CMAKEDIR} RENAME emissions-component-${name}.cmake)
endfunction()

# ---- the core ------------------------------------------------------------------------
install(DIRECTORY include/emissions DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS emissions EXPORT emissionsTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT emissionsTargets NAMESPACE emissions:: DESTINATION ${EMISSIONS_INSTALL_CMAKEDIR})

# ---- components ----------------------------------------------------------------------
if(TARGET emissions_testing)
  emissions_install_component(testing TARGETS emissions_testing INCLUDE_DIR testing/include)
endif()

# The integrations this build made (EmissionsIntegration.cmake): each one's component file
# is generated from cmake/components/integration.cmake.in, to find the same dependency the
# same way (EmissionsFindDependency.cmake, installed beside it) in the consumer's build
# before loading the targets.
get_property(_emissions_integrations GLOBAL PROPERTY EMISSIONS_INTEGRATIONS)
foreach(_emissions_integration IN LISTS _emissions_integrations)
  string(TOUPPER "${_emissions_integration}" _emissions_upper)
  string(SUBSTRING "${_emissions_integration}" 0 1 _emissions_first)
  string(SUBSTRING "${_emissions_integration}" 1 -1 _emissions_rest)
  string(TOUPPER "${_emissions_first}" _emissions_first)
  set(EMISSIONS_COMPONENT ${_emissions_integration})
  set(EMISSIONS_EXPORT_STEM ${_emissions_first}${_emissions_rest})
  get_property(_emissions_find GLOBAL PROPERTY EMISSIONS_INTEGRATION_${_emissions_upper}_FIND)
  # The arguments as CMake source: each one quoted (a module spec such as "libcurl>=7.88").
  set(EMISSIONS_FIND_ARGS "")
  foreach(_emissions_arg IN LISTS _emissions_find)
    string(APPEND EMISSIONS_FIND_ARGS " \"${_emissions_arg}\"")
  endforeach()
  string(STRIP "${EMISSIONS_FIND_ARGS}" EMISSIONS_FIND_ARGS)
  get_property(EMISSIONS_LOOKED_FOR GLOBAL
               PROPERTY EMISSIONS_INTEGRATION_${_emissions_upper}_LOOKED_FOR)
  get_property(EMISSIONS_NEEDS GLOBAL PROPERTY EMISSIONS_INTEGRATION_${_emissions_upper}_NEEDS)
  set(_emissions_file ${CMAKE_CURRENT_BINARY_DIR}/emissions-component-${_emissions_integration}.cmake)
  configure_file(cmake/components/integration.cmake.in ${_emissions_file} @ONLY)
  emissions_install_component(${_emissions_integration}
      TARGETS emissions_${_emissions_integration}
      INCLUDE_DIR integrations/${_emissions_integration}/include
      COMPONENT_FILE ${_emissions_file})
endforeach()

if(_emissions_integrations)
  install(FILES ${PROJECT_SOURCE_DIR}/cmake/EmissionsFindDependency.cmake
          DESTINATION ${EMISSIONS_INSTALL_CMAKEDIR})
endif()

install(FILES ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})

# ---- the CMake package ---------------------------------------------------------------
configure_package_config_file(cmake/emissionsConfig.cmake.in
    ${CMAKE_CURRENT_BINARY_DIR}/emissionsConfig.cmake
    INSTALL_DESTINATION ${EMISSIONS_INSTALL_CMAKEDIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/emissionsConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/emissionsConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/emissionsConfigVersion.cmake
        DESTINATION ${EMISSIONS_INSTALL_CMAKEDIR})

# ---- pkg-config ----------------------------------------------------------------------
# The prefix is found from the .pc file's own place (${pcfiledir}), so the file stays right
# when the tree is installed with `cmake --install --prefix <dir>` or moved afterwards.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(EMISSIONS_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(EMISSIONS_PC_LIBDIR "${CMAKE_INSTALL_FULL_LIBDIR}")
  set(EMISSIONS_PC_INCLUDEDIR "${CMAKE_INSTALL_FULL_INCLUDEDIR}")
else()
  file(RELATIVE_PATH _emissions_pc_up "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
  string(REGEX REPLACE "/$" "" _emissions_pc_up "${_emissions_pc_up}")
  set(EMISSIONS_PC_PREFIX "\${pcfiledir}/${_emissions_pc_up}")
  set(EMISSIONS_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  set(EMISSIONS_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(cmake/emissions.pc.in ${CMAKE_CURRENT_BINARY_DIR}/emissions.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/emissions.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
