! caudal.f90 - the Fortran module over libcaudal (iso_c_binding).
!
!   use caudal
!   type(caudal_client) :: c
!   rc = caudal_open(c, rank, nranks)              ! endpoint, token from the environment
!   rc = caudal_declare(c, "temperature", CAUDAL_FLOAT64, shape, start, count) ! integer or int64
!   rc = caudal_begin_step(c, step)
!   rc = caudal_put(c, "temperature", t)           ! t(:,:) real(real64), contiguous
!   rc = caudal_end_step(c)
!   rc = caudal_steer_get_double(c, "q", q)        ! CAUDAL_NO_VALUE: nothing set yet
!   rc = caudal_close(c)
!
! Every function returns libcaudal's status (CAUDAL_OK is 0); caudal_last_error(c)
! names the rank, step and array, caudal_strerror(rc) the status. Arrays are
! declared in Fortran order: shape, start (0-based) and count as Fortran indexes
! them, first dimension fastest (CAUDAL_ORDER_F); the analytics see the array
! in the same order. For collective steering, read on one rank and broadcast
! (MPI_Bcast), as caudal_mpi.h's caudal_steer_get_double_mpi does in C.
module caudal
    use, intrinsic :: iso_c_binding
    implicit none
    private

    integer, parameter, public :: CAUDAL_OK = 0, CAUDAL_NO_VALUE = 1, CAUDAL_ERR_INVALID = -1
    integer, parameter, public :: CAUDAL_INT32 = 3, CAUDAL_INT64 = 4, CAUDAL_FLOAT32 = 9, &
                                  CAUDAL_FLOAT64 = 10
    integer, parameter :: ORDER_F = 1

    type, public :: caudal_client
        type(c_ptr) :: p = c_null_ptr
    end type

    ! caudal_options, field for field (include/caudal.h)
    type, bind(c) :: options_t
        integer(c_int) :: rank, size
        type(c_ptr) :: endpoint, token
        integer(c_int) :: ring_depth
        integer(c_size_t) :: slot_bytes
        integer(c_int) :: policy, block_timeout_ms, connect_timeout_ms
        integer(c_int64_t) :: reserved(8)
    end type

    public :: caudal_open, caudal_declare, caudal_declare_var, caudal_begin_step, caudal_put, &
              caudal_put_ptr, caudal_put_var, caudal_end_step, caudal_steer_get_double, &
              caudal_steer_set_double, caudal_close, caudal_last_error, caudal_strerror

    ! shape, start, count and steps as default integers or integer(int64)
    interface caudal_declare
        module procedure declare_i64, declare_i32
    end interface

    interface caudal_begin_step
        module procedure begin_step_i64, begin_step_i32
    end interface

    interface caudal_put
        module procedure put_f64_1, put_f64_2, put_f64_3, put_f32_1, put_f32_2, put_f32_3, &
                         put_i32_1, put_i64_1
    end interface

    interface
        integer(c_int) function c_options_init(o) bind(c, name="caudal_options_init")
            import :: c_int, options_t
            type(options_t), intent(out) :: o
        end function
        integer(c_int) function c_open(c, o, err, errlen) bind(c, name="caudal_open")
            import :: c_int, c_ptr, c_char, c_size_t, options_t
            type(c_ptr), intent(out) :: c
            type(options_t), intent(in) :: o
            character(kind=c_char), intent(out) :: err(*)
            integer(c_size_t), value :: errlen
        end function
        integer(c_int) function c_declare(c, name, dtype, ndim, shape, start, count, order) &
            bind(c, name="caudal_declare")
            import :: c_int, c_ptr, c_char, c_int64_t
            type(c_ptr), value :: c
            character(kind=c_char), intent(in) :: name(*)
            integer(c_int), value :: dtype, ndim, order
            integer(c_int64_t), intent(in) :: shape(*), start(*), count(*)
        end function
        integer(c_int) function c_declare_var(c, name, dtype, capacity) &
            bind(c, name="caudal_declare_var")
            import :: c_int, c_ptr, c_char, c_int64_t
            type(c_ptr), value :: c
            character(kind=c_char), intent(in) :: name(*)
            integer(c_int), value :: dtype
            integer(c_int64_t), value :: capacity
        end function
        integer(c_int) function c_begin_step(c, step) bind(c, name="caudal_begin_step")
            import :: c_int, c_ptr, c_int64_t
            type(c_ptr), value :: c
            integer(c_int64_t), value :: step
        end function
        integer(c_int) function c_put(c, name, dtype, data) bind(c, name="caudal_put")
            import :: c_int, c_ptr, c_char
            type(c_ptr), value :: c, data
            character(kind=c_char), intent(in) :: name(*)
            integer(c_int), value :: dtype
        end function
        integer(c_int) function c_put_check(c, name, dtype, variable, ndim, dims) &
            bind(c, name="caudal_put_check")
            import :: c_int, c_ptr, c_char, c_int64_t
            type(c_ptr), value :: c
            character(kind=c_char), intent(in) :: name(*)
            integer(c_int), value :: dtype, variable, ndim
            integer(c_int64_t), intent(in) :: dims(*)
        end function
        integer(c_int) function c_set_error(c, status, array, message) &
            bind(c, name="caudal_set_error")
            import :: c_int, c_ptr, c_char
            type(c_ptr), value :: c
            integer(c_int), value :: status
            character(kind=c_char), intent(in) :: array(*), message(*)
        end function
        integer(c_int) function c_put_var(c, name, dtype, data, count) &
            bind(c, name="caudal_put_var")
            import :: c_int, c_ptr, c_char, c_int64_t
            type(c_ptr), value :: c, data
            character(kind=c_char), intent(in) :: name(*)
            integer(c_int), value :: dtype
            integer(c_int64_t), value :: count
        end function
        integer(c_int) function c_end_step(c) bind(c, name="caudal_end_step")
            import :: c_int, c_ptr
            type(c_ptr), value :: c
        end function
        integer(c_int) function c_steer_get_double(c, key, v) &
            bind(c, name="caudal_steer_get_double")
            import :: c_int, c_ptr, c_char, c_double
            type(c_ptr), value :: c
            character(kind=c_char), intent(in) :: key(*)
            real(c_double), intent(out) :: v
        end function
        integer(c_int) function c_steer_set_double(c, key, v) &
            bind(c, name="caudal_steer_set_double")
            import :: c_int, c_ptr, c_char, c_double
            type(c_ptr), value :: c
            character(kind=c_char), intent(in) :: key(*)
            real(c_double), value :: v
        end function
        integer(c_int) function c_close(c) bind(c, name="caudal_close")
            import :: c_int, c_ptr
            type(c_ptr), intent(inout) :: c
        end function
        type(c_ptr) function c_last_error(c) bind(c, name="caudal_last_error")
            import :: c_ptr
            type(c_ptr), value :: c
        end function
        type(c_ptr) function c_strerror(rc) bind(c, name="caudal_strerror")
            import :: c_ptr, c_int
            integer(c_int), value :: rc
        end function
        integer(c_size_t) function c_strlen(s) bind(c, name="strlen")
            import :: c_ptr, c_size_t
            type(c_ptr), value :: s
        end function
    end interface

contains

    ! A Fortran string as C's: trailing blanks dropped, terminated.
    pure function cstr(s) result(out)
        character(*), intent(in) :: s
        character(kind=c_char, len=len_trim(s) + 1) :: out
        out = trim(s) // c_null_char
    end function

    ! A C string as a Fortran one (empty for NULL).
    function fstr(p) result(out)
        type(c_ptr), intent(in) :: p
        character(:), allocatable :: out
        character(kind=c_char), pointer :: chars(:)
        integer :: i, n
        if (.not. c_associated(p)) then
            out = ""
            return
        end if
        n = int(c_strlen(p))
        call c_f_pointer(p, chars, [n])
        allocate(character(n) :: out)
        do i = 1, n
            out(i:i) = chars(i)
        end do
    end function

    ! Connect as rank `rank` of `nranks`: endpoint and token from the environment
    ! (CAUDAL_ENDPOINT, CAUDAL_TOKEN: what caudal run sets). errmsg, if given,
    ! gets why it failed.
    integer function caudal_open(c, rank, nranks, errmsg) result(rc)
        type(caudal_client), intent(out) :: c
        integer, intent(in) :: rank, nranks
        character(:), allocatable, intent(out), optional :: errmsg
        type(options_t) :: o
        character(kind=c_char) :: err(512)
        integer :: n
        rc = c_options_init(o)
        if (rc /= CAUDAL_OK) return
        o%rank = rank
        o%size = nranks
        err = c_null_char
        rc = c_open(c%p, o, err, int(size(err), c_size_t))
        if (present(errmsg)) then
            n = 0
            do while (n < size(err))
                if (err(n + 1) == c_null_char) exit
                n = n + 1
            end do
            allocate(character(n) :: errmsg)
            errmsg = transfer(err(1:n), errmsg)
        end if
    end function

    ! A fixed-shape array; shape, start (0-based) and count in Fortran order.
    integer function declare_i64(c, name, dtype, shape, start, count) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: name
        integer, intent(in) :: dtype
        integer(c_int64_t), intent(in) :: shape(:), start(:), count(:)
        rc = c_declare(c%p, cstr(name), int(dtype, c_int), int(size(shape), c_int), shape, &
                       start, count, int(ORDER_F, c_int))
    end function

    integer function declare_i32(c, name, dtype, shape, start, count) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: name
        integer, intent(in) :: dtype
        integer(c_int32_t), intent(in) :: shape(:), start(:), count(:)
        rc = declare_i64(c, name, dtype, int(shape, c_int64_t), int(start, c_int64_t), &
                         int(count, c_int64_t))
    end function

    integer function caudal_declare_var(c, name, dtype, capacity) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: name
        integer, intent(in) :: dtype
        integer(c_int64_t), intent(in) :: capacity
        rc = c_declare_var(c%p, cstr(name), int(dtype, c_int), capacity)
    end function

    integer function begin_step_i64(c, step) result(rc)
        type(caudal_client), intent(in) :: c
        integer(c_int64_t), intent(in) :: step
        rc = c_begin_step(c%p, step)
    end function

    integer function begin_step_i32(c, step) result(rc)
        type(caudal_client), intent(in) :: c
        integer(c_int32_t), intent(in) :: step
        rc = c_begin_step(c%p, int(step, c_int64_t))
    end function

    ! Any contiguous block, by address and libcaudal dtype.
    integer function caudal_put_ptr(c, name, dtype, data) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: name
        integer, intent(in) :: dtype
        type(c_ptr), intent(in) :: data
        rc = c_put(c%p, cstr(name), int(dtype, c_int), data)
    end function

    ! A typed put: its array's shape checked against the declaration first
    ! (caudal_put_check), so a block of the wrong size is an error naming the
    ! array and both shapes, not a read past the array.
    integer function put_shaped(c, name, dtype, dims, data) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: name
        integer, intent(in) :: dtype
        integer(c_int64_t), intent(in) :: dims(:)
        type(c_ptr), intent(in) :: data
        rc = c_put_check(c%p, cstr(name), int(dtype, c_int), 0_c_int, int(size(dims), c_int), dims)
        if (rc == CAUDAL_OK) rc = c_put(c%p, cstr(name), int(dtype, c_int), data)
    end function

    integer function put_f64_1(c, name, a) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: name
        real(c_double), intent(in), target, contiguous :: a(:)
        rc = put_shaped(c, name, CAUDAL_FLOAT64, shape(a, kind=c_int64_t), c_loc(a))
    end function

    integer function put_f64_2(c, name, a) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: name
        real(c_double), intent(in), target, contiguous :: a(:, :)
        rc = put_shaped(c, name, CAUDAL_FLOAT64, shape(a, kind=c_int64_t), c_loc(a))
    end function

    integer function put_f64_3(c, name, a) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: name
        real(c_double), intent(in), target, contiguous :: a(:, :, :)
        rc = put_shaped(c, name, CAUDAL_FLOAT64, shape(a, kind=c_int64_t), c_loc(a))
    end function

    integer function put_f32_1(c, name, a) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: name
        real(c_float), intent(in), target, contiguous :: a(:)
        rc = put_shaped(c, name, CAUDAL_FLOAT32, shape(a, kind=c_int64_t), c_loc(a))
    end function

    integer function put_f32_2(c, name, a) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: name
        real(c_float), intent(in), target, contiguous :: a(:, :)
        rc = put_shaped(c, name, CAUDAL_FLOAT32, shape(a, kind=c_int64_t), c_loc(a))
    end function

    integer function put_f32_3(c, name, a) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: name
        real(c_float), intent(in), target, contiguous :: a(:, :, :)
        rc = put_shaped(c, name, CAUDAL_FLOAT32, shape(a, kind=c_int64_t), c_loc(a))
    end function

    integer function put_i32_1(c, name, a) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: name
        integer(c_int32_t), intent(in), target, contiguous :: a(:)
        rc = put_shaped(c, name, CAUDAL_INT32, shape(a, kind=c_int64_t), c_loc(a))
    end function

    integer function put_i64_1(c, name, a) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: name
        integer(c_int64_t), intent(in), target, contiguous :: a(:)
        rc = put_shaped(c, name, CAUDAL_INT64, shape(a, kind=c_int64_t), c_loc(a))
    end function

    ! A variable-length array's part this step: the first n elements of a.
    integer function caudal_put_var(c, name, a, n) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: name
        real(c_double), intent(in), target, contiguous :: a(:)
        integer(c_int64_t), intent(in) :: n
        character(64) :: what
        if (n < 0 .or. n > size(a, kind=c_int64_t)) then  ! past the array: refused here
            write (what, '(a, i0, a, i0, a)') "put_var of ", n, " elements from an array of ", &
                size(a, kind=c_int64_t), ""
            rc = c_set_error(c%p, int(CAUDAL_ERR_INVALID, c_int), cstr(name), cstr(trim(what)))
            return
        end if
        rc = c_put_var(c%p, cstr(name), int(CAUDAL_FLOAT64, c_int), c_loc(a), n)
    end function

    integer function caudal_end_step(c) result(rc)
        type(caudal_client), intent(in) :: c
        rc = c_end_step(c%p)
    end function

    integer function caudal_steer_get_double(c, key, v) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: key
        real(c_double), intent(inout) :: v
        real(c_double) :: got
        rc = c_steer_get_double(c%p, cstr(key), got)
        if (rc == CAUDAL_OK) v = got
    end function

    integer function caudal_steer_set_double(c, key, v) result(rc)
        type(caudal_client), intent(in) :: c
        character(*), intent(in) :: key
        real(c_double), intent(in) :: v
        rc = c_steer_set_double(c%p, cstr(key), v)
    end function

    integer function caudal_close(c) result(rc)
        type(caudal_client), intent(inout) :: c
        rc = c_close(c%p)
    end function

    function caudal_last_error(c) result(msg)
        type(caudal_client), intent(in) :: c
        character(:), allocatable :: msg
        msg = fstr(c_last_error(c%p))
    end function

    function caudal_strerror(rc) result(msg)
        integer, intent(in) :: rc
        character(:), allocatable :: msg
        msg = fstr(c_strerror(int(rc, c_int)))
    end function
end module caudal
