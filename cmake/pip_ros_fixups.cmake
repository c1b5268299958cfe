# Passed as -DCMAKE_PROJECT_INCLUDE when building the interfaces against the
# ROS 2 PyPI wheels. Their exported *__rosidl_generator_py targets carry the
# include path of the manylinux build container's Python, which does not exist
# on a user's machine; point them at this interpreter's headers instead.
find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)

function(partseg_fix_pip_python_includes)
  get_property(_targets DIRECTORY PROPERTY IMPORTED_TARGETS)
  foreach(_t IN LISTS _targets)
    if(_t MATCHES "__rosidl_generator_py$")
      get_target_property(_dirs ${_t} INTERFACE_INCLUDE_DIRECTORIES)
      if(_dirs)
        list(FILTER _dirs EXCLUDE REGEX "^/opt/python/")
      else()
        set(_dirs "")
      endif()
      list(APPEND _dirs ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
      set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_dirs}")
    endif()
  endforeach()
endfunction()

# Imported targets appear as find_package() runs in CMakeLists.txt; fix them
# once the whole directory has been configured, before generation checks paths.
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL partseg_fix_pip_python_includes)
