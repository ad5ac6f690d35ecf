! heat2d.f90 - the heat example in Fortran: a 2-D heat equation on NX x NY
! points, the columns split over the MPI ranks (Fortran order: a rank's block
! u(:, 1:nyl) is contiguous), publishing its field through the caudal module
! every K-th step and applying the steering value "q" (the source strength) on
! every rank at the same step.
!
!   usage: heat2d_f NX NY STEPS [--every K] [--mean FILE]
!
! Each step the global mean and the mean of the first row (x index 1, every
! y) come from MPI_Allreduce, and rank 0 writes "step mean rowmean q" to FILE
! (q the source strength that step applied): the simulation's own record,
! against which the tests check the analytics and the steering.
! Without CAUDAL_ENDPOINT (no caudal run) it publishes nothing.
program heat2d_f
    use, intrinsic :: iso_c_binding, only: c_double
    use mpi
    use caudal
    implicit none

    type(caudal_client) :: c
    real(c_double), allocatable :: u(:, :), un(:, :)
    real(c_double) :: q, sums(2), total(2), up, down, lft, rgt
    integer :: ierr, rank, nranks, nx, ny, steps, every, nyl, y0, step, i, j, rc, a, out
    integer :: left, right, status(MPI_STATUS_SIZE)
    character(256) :: arg, mean_path
    logical :: publish, writing

    call MPI_Init(ierr)
    call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
    call MPI_Comm_size(MPI_COMM_WORLD, nranks, ierr)
    if (command_argument_count() < 3) then
        if (rank == 0) print '(a)', "usage: heat2d_f NX NY STEPS [--every K] [--mean FILE]"
        call MPI_Abort(MPI_COMM_WORLD, 2, ierr)
    end if
    nx = int_arg(1)
    ny = int_arg(2)
    steps = int_arg(3)
    every = 1
    mean_path = ""
    a = 4
    do while (a < command_argument_count())
        call get_command_argument(a, arg)
        if (arg == "--every") then
            every = int_arg(a + 1)
        else if (arg == "--mean") then
            call get_command_argument(a + 1, mean_path)
        end if
        a = a + 2
    end do
    if (nx < 1 .or. ny < nranks .or. steps < 1 .or. every < 1) then
        if (rank == 0) print '(a)', "heat2d_f: NX >= 1, NY >= ranks, STEPS >= 1, K >= 1"
        call MPI_Abort(MPI_COMM_WORLD, 2, ierr)
    end if

    ! Columns y0 .. y0 + nyl - 1 (0-based), the first ranks one more.
    nyl = ny / nranks
    y0 = rank * nyl + min(rank, mod(ny, nranks))
    if (rank < mod(ny, nranks)) nyl = nyl + 1
    left = merge(MPI_PROC_NULL, rank - 1, rank == 0)
    right = merge(MPI_PROC_NULL, rank + 1, rank == nranks - 1)
    allocate(u(nx, 0:nyl + 1), un(nx, 0:nyl + 1))
    u = 0
    un = 0
    q = 0.05d0

    publish = endpoint_set()
    if (publish) then
        rc = caudal_open(c, rank, nranks)
        call check(rc, "open")
        rc = caudal_declare(c, "temperature", CAUDAL_FLOAT64, [nx, ny], [0, y0], [nx, nyl])
        call check(rc, "declare")
    end if
    writing = rank == 0 .and. len_trim(mean_path) > 0
    if (writing) then
        open(newunit=out, file=trim(mean_path), status="replace", action="write")
    end if

    do step = 0, steps - 1
        ! Halo columns from the neighbours (none at the edges: the border is 0).
        call MPI_Sendrecv(u(:, nyl), nx, MPI_DOUBLE_PRECISION, right, 0, u(:, 0), nx, &
                          MPI_DOUBLE_PRECISION, left, 0, MPI_COMM_WORLD, status, ierr)
        call MPI_Sendrecv(u(:, 1), nx, MPI_DOUBLE_PRECISION, left, 1, u(:, nyl + 1), nx, &
                          MPI_DOUBLE_PRECISION, right, 1, MPI_COMM_WORLD, status, ierr)
        do j = 1, nyl
            do i = 1, nx
                up = 0
                down = 0
                if (i > 1) up = u(i - 1, j)
                if (i < nx) down = u(i + 1, j)
                lft = u(i, j - 1)
                rgt = u(i, j + 1)
                un(i, j) = u(i, j) + 0.2d0 * (up + down + lft + rgt - 4 * u(i, j))
                if (4 * i > nx .and. 4 * i <= 3 * nx .and. 4 * (y0 + j) > ny .and. &
                    4 * (y0 + j) <= 3 * ny) un(i, j) = un(i, j) + q
            end do
        end do
        u(:, 1:nyl) = un(:, 1:nyl)

        sums = [sum(u(:, 1:nyl)), sum(u(1, 1:nyl))]
        call MPI_Allreduce(sums, total, 2, MPI_DOUBLE_PRECISION, MPI_SUM, MPI_COMM_WORLD, ierr)
        if (writing) write (out, '(i0, 3(1x, es25.17))') step, total(1) / (real(nx, c_double) &
                                                          * ny), total(2) / ny, q

        if (publish .and. mod(step, every) == 0) then
            call check(caudal_begin_step(c, step), "begin_step")
            call check(caudal_put(c, "temperature", u(:, 1:nyl)), "put")
            call check(caudal_end_step(c), "end_step")
            ! Rank 0's steering value, broadcast: every rank applies it now.
            rc = caudal_steer_get_double(c, "q", q)
            call MPI_Bcast(q, 1, MPI_DOUBLE_PRECISION, 0, MPI_COMM_WORLD, ierr)
        end if
    end do

    if (writing) close (out)
    if (publish) call check(caudal_close(c), "close")
    if (rank == 0) print '(a, i0, a)', "heat2d_f: ", steps, " steps"
    call MPI_Finalize(ierr)

contains

    integer function int_arg(k)
        integer, intent(in) :: k
        character(64) :: s
        integer :: ios
        call get_command_argument(k, s)
        read (s, *, iostat=ios) int_arg
        if (ios /= 0) then
            print '(3a)', "heat2d_f: not a number: '", trim(s), "'"
            call MPI_Abort(MPI_COMM_WORLD, 2, ierr)
        end if
    end function

    logical function endpoint_set()
        integer :: n, st
        call get_environment_variable("CAUDAL_ENDPOINT", length=n, status=st)
        endpoint_set = st == 0 .and. n > 0
    end function

    subroutine check(status_, what)
        integer, intent(in) :: status_
        character(*), intent(in) :: what
        if (status_ /= CAUDAL_OK) then
            print '(5a)', "heat2d_f: ", what, ": ", caudal_last_error(c), &
                " (" // caudal_strerror(status_) // ")"
            call MPI_Abort(MPI_COMM_WORLD, 2, ierr)
        end if
    end subroutine
end program heat2d_f
